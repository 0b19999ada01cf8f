"""`vidx eval`: retrieval metrics as the CLIP2Video paper's evaluation code computes them; `evaluate` on Parquet."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cli import cli_error, cli_json
from jobs.evaluation import (best_caption_scores, evaluate, ground_truth_ranks, sorted_position_ranks,
                             text_to_video_metrics, video_to_text_metrics)
from storage.table.dataset import write_part
from storage.schema import caption_schema, video_schema


def metrics(r1, r5, r10, mdr, mnr) -> dict:
    return {"R@1": r1, "R@5": r5, "R@10": r10, "MdR": mdr, "MnR": mnr}


def assert_metrics(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    assert got == pytest.approx(expected)


def test_square_matrix_one_caption_per_video():
    sim = np.array([[0.9, 0.1, 0.3],
                    [0.8, 0.2, 0.5],
                    [0.4, 0.6, 0.7]])
    # t2v, rows: caption 0 -> video 0 is best (rank 1); caption 1 -> 0.2 < 0.8, 0.5 (rank 3);
    # caption 2 -> 0.7 is best (rank 1). Ranks [1, 3, 1].
    assert_metrics(text_to_video_metrics(sim), metrics(200 / 3, 100, 100, 1.0, 5 / 3))
    # v2t, columns: video 0 -> 0.9 (1); video 1 -> 0.2 < 0.6 (2); video 2 -> 0.7 (1). Ranks [1, 2, 1].
    assert_metrics(video_to_text_metrics(sim), metrics(200 / 3, 100, 100, 1.0, 4 / 3))


def test_recall_at_5_and_10_and_the_two_medians():
    # 4 captions over 11 videos; caption q's video is column q. Higher integer = more similar.
    sim = np.array([
        [10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9],   # truth 10: nothing higher -> rank 1
        [0, 6, 1, 2, 3, 4, 5, 7, 8, 9, 10],   # truth 6: 7, 8, 9, 10 higher -> rank 5
        [0, 1, 5, 2, 3, 4, 6, 7, 8, 9, 10],   # truth 5: 6..10 higher -> rank 6
        [1, 2, 3, 0, 4, 5, 6, 7, 8, 9, 10],   # truth 0: all 10 others higher -> rank 11
    ], dtype=np.float32)
    # Ranks [1, 5, 6, 11]. The multi-caption path takes torch's median, the lower middle rank: 5.
    assert_metrics(text_to_video_metrics(sim, [0, 1, 2, 3]), metrics(25, 50, 75, 5, 23 / 4))


def test_the_square_path_takes_numpys_median():
    sim = np.tile([4.0, 3.0, 2.0, 1.0], (4, 1))  # caption q's video q ranks q + 1: ranks [1, 2, 3, 4]
    assert_metrics(text_to_video_metrics(sim), metrics(25, 100, 100, 2.5, 2.5))  # compute_metrics' median
    assert text_to_video_metrics(sim, [0, 1, 2, 3])["MdR"] == 2  # the multi-caption path's


def test_a_tied_ground_truth_counts_once_per_tied_position():
    sim = np.array([[0.5, 0.5, 0.1],    # truth 0.5 ties with column 1: ranks 1 and 2
                    [0.2, 0.9, 0.9],    # truth 0.9 ties with column 2: ranks 1 and 2
                    [0.3, 0.3, 0.3]])   # truth ties with all three: ranks 1, 2 and 3
    assert ground_truth_ranks(sim, [0, 1, 2]).tolist() == [1, 2, 1, 2, 1, 2, 3]
    # 7 entries from 3 queries: R@1 = 3/7, MdR of [1,1,1,2,2,2,3] = 2, MnR = 12/7.
    assert_metrics(text_to_video_metrics(sim), metrics(300 / 7, 100, 100, 2.0, 12 / 7))
    # A tie below the top: 0.9 is higher, then truth 0.5 ties with column 2 -> ranks 2 and 3,
    # wherever the tied columns stand (no dependence on column order, unlike an unstable argsort).
    assert ground_truth_ranks(np.array([[0.9, 0.5, 0.5]]), [1]).tolist() == [2, 3]
    assert ground_truth_ranks(np.array([[0.5, 0.5, 0.9]]), [1]).tolist() == [2, 3]


def test_the_multi_caption_sort_keeps_tied_videos_in_column_order():
    # One rank per caption: its video's place in a stable descending sort (torch's argsort on short rows).
    assert sorted_position_ranks(np.array([[0.9, 0.5, 0.5]]), np.array([1])).tolist() == [2]
    assert sorted_position_ranks(np.array([[0.9, 0.5, 0.5]]), np.array([2])).tolist() == [3]
    assert sorted_position_ranks(np.array([[0.3, 0.3, 0.3], [0.2, -np.inf, 0.1]]), np.array([0, 1])).tolist() == [1]


# Three videos with 2, 1 and 3 captions (rows: captions, columns: videos 0, 1, 2).
MULTI_SIM = np.array([
    [0.9, 0.2, 0.1],    # video 0: truth 0.9 -> rank 1
    [0.3, 0.6, 0.4],    # video 0: truth 0.3 < 0.6, 0.4 -> rank 3
    [0.5, 0.7, 0.2],    # video 1: truth 0.7 -> rank 1
    [0.1, 0.2, 0.8],    # video 2: truth 0.8 -> rank 1
    [0.6, 0.85, 0.5],   # video 2: truth 0.5 < 0.6, 0.85 -> rank 3
    [0.2, 0.9, 0.4],    # video 2: truth 0.4 < 0.9 -> rank 2
])
MULTI_VIDEO = [0, 0, 1, 2, 2, 2]


def test_multi_caption_text_to_video_ranks_every_caption():
    # Ranks [1, 3, 1, 1, 3, 2]: sorted 1,1,1,2,3,3 -> MdR 1 (the lower middle), MnR 11/6.
    assert_metrics(text_to_video_metrics(MULTI_SIM, MULTI_VIDEO), metrics(50, 100, 100, 1, 11 / 6))


def test_multi_caption_video_to_text_ranks_caption_groups_by_their_best_caption():
    # [query video k, caption group i] = max over video i's captions of sim[caption, k].
    best = best_caption_scores(MULTI_SIM, MULTI_VIDEO)
    np.testing.assert_allclose(best, [[0.9, 0.5, 0.6],     # video 0: truth 0.9 -> rank 1
                                      [0.6, 0.7, 0.9],     # video 1: truth 0.7 < 0.9 -> rank 2
                                      [0.4, 0.2, 0.8]])    # video 2: truth 0.8 -> rank 1
    # Video 1 is beaten by two captions of video 2 (0.85, 0.9) but by one group: rank 2, not 3.
    assert_metrics(video_to_text_metrics(MULTI_SIM, MULTI_VIDEO), metrics(200 / 3, 100, 100, 1.0, 4 / 3))


def test_a_video_without_captions_is_a_candidate_but_no_query():
    sim = np.array([[0.9, 0.1, 0.95],   # video 0's caption: video 2 scores higher -> rank 2
                    [0.2, 0.8, 0.3]])   # video 1's caption -> rank 1
    assert_metrics(text_to_video_metrics(sim, [0, 1]), metrics(50, 100, 100, 1, 1.5))
    # Video 2's caption group is empty (-inf, the paper's padding): it never outranks a group, and its
    # own query has a -inf truth, which is dropped. Videos 0 and 1: 0.9 > 0.2 and 0.8 > 0.1 -> rank 1.
    assert np.isneginf(best_caption_scores(sim, [0, 1])[:, 2]).all()
    assert_metrics(video_to_text_metrics(sim, [0, 1]), metrics(100, 100, 100, 1.0, 1.0))


@pytest.mark.parametrize("n", [7, 8])
def test_one_caption_per_video_the_paths_differ_only_in_the_median(n):
    sim = np.random.default_rng(n).standard_normal((n, n))  # no ties
    square = text_to_video_metrics(sim)
    multi = text_to_video_metrics(sim, np.arange(n))
    ranks = np.sort(ground_truth_ranks(sim, np.arange(n)))
    assert {k: v for k, v in multi.items() if k != "MdR"} == {k: v for k, v in square.items() if k != "MdR"}
    assert (square["MdR"], multi["MdR"]) == (np.median(ranks), ranks[(n - 1) // 2])


def brute_force(sim: np.ndarray, caption_video: list[int]) -> tuple[dict, dict]:
    """Python loops: every position of the truth's score in each query's sorted scores is a rank."""
    def summary(ranks, median=statistics.median):
        return metrics(*(100 * sum(r <= k for r in ranks) / len(ranks) for k in (1, 5, 10)),
                       median(ranks), statistics.fmean(ranks))

    def ranks_of(scores, truth):
        ordered = sorted(scores, reverse=True)
        return [i + 1 for i, score in enumerate(ordered) if score == scores[truth]]

    def sorted_position(scores, truth):
        return sorted(range(len(scores)), key=lambda column: -scores[column]).index(truth) + 1  # stable

    rows = sim.tolist()
    t2v = [sorted_position(row, caption_video[q]) for q, row in enumerate(rows)]
    groups = {v: [q for q, owner in enumerate(caption_video) if owner == v] for v in set(caption_video)}
    v2t = []
    for k in sorted(groups):
        scores = {i: max(rows[q][k] for q in captions) for i, captions in groups.items()}
        names = sorted(scores)
        v2t += ranks_of([scores[i] for i in names], names.index(k))
    return summary(t2v, statistics.median_low), summary(v2t)


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_a_brute_force_count(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, 15)
    caption_video = rng.permutation(np.repeat(np.arange(15), counts)).tolist()
    # odd seeds: few distinct values, so many ties; the last video has no captions
    sim = rng.integers(0, 4, (len(caption_video), 16)).astype(np.float32) if seed % 2 else \
        rng.standard_normal((len(caption_video), 16)).astype(np.float32)
    t2v, v2t = brute_force(sim, caption_video)
    assert_metrics(text_to_video_metrics(sim, caption_video), t2v)
    assert_metrics(video_to_text_metrics(sim, caption_video), v2t)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="caption_video"):
        text_to_video_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="caption_video"):
        text_to_video_metrics(np.zeros((2, 3)), [0, 3])


# --- evaluate() on an index output directory ---

DIM = 3


def write_videos(directory, rows: list[dict], dim: int = DIM) -> None:
    for row in rows:
        row.setdefault("key", f"{row['video_id']}#{row.get('segment', 0)}")
        row.setdefault("uri", f"/videos/{row['video_id']}.mp4")
        row.setdefault("segment", 0)
        row.setdefault("status", "ok")
        row.setdefault("run_id", "run-2")
    write_part(pa.Table.from_pylist(rows, schema=video_schema(dim, pa.schema([]), {})), str(directory), "key")


def write_captions(directory, rows: list[tuple[str, list[float]]], dim: int = DIM) -> None:
    counts: dict[str, int] = {}
    table = []
    for video_id, embedding in rows:
        n = counts[video_id] = counts.get(video_id, -1) + 1
        table.append({"caption_id": f"{video_id}#{n}", "video_id": video_id, "text": f"caption {n} of {video_id}",
                      "run_id": "run-2", "embedding": embedding})
    write_part(pa.Table.from_pylist(table, schema=caption_schema(dim, {})), str(directory), "caption_id")


@pytest.fixture
def index_dir(tmp_path):
    # Video vectors are the unit axes, so a caption's score against a video is one of its coordinates.
    write_videos(tmp_path / "videos", [
        {"video_id": "a", "embedding": [1.0, 0.0, 0.0]},
        {"video_id": "b", "embedding": [0.0, 1.0, 0.0]},
        {"video_id": "c", "embedding": [0.0, 0.0, 1.0]},
        {"video_id": "d", "status": "error", "error": "truncated file", "embedding": None},
    ])
    # An older run's row of video "a": superseded, so neither read nor a second row of "a".
    write_videos(tmp_path / "videos", [{"video_id": "a", "run_id": "run-1", "embedding": [0.0, 1.0, 0.0]}])
    write_captions(tmp_path / "captions", [
        ("a", [0.96, 0.28, 0.0]),    # t2v: truth a = 0.96 -> rank 1
        ("a", [0.0, 0.8, 0.6]),      # t2v: truth a = 0 < 0.8, 0.6 -> rank 3
        ("b", [0.0, 0.96, 0.28]),    # t2v: truth b = 0.96 -> rank 1
        ("c", [0.8, 0.36, 0.48]),    # t2v: truth c = 0.48 < 0.8 -> rank 2
        ("d", [1.0, 0.0, 0.0]),      # video d failed: skipped
        ("e", [0.0, 1.0, 0.0]),      # video e was never indexed: skipped
    ])
    return tmp_path


def test_evaluate_an_index_directory(index_dir):
    result = evaluate(str(index_dir))
    # t2v ranks [1, 3, 1, 2] (lower median 1). v2t, best caption per group against each query video:
    #   a: groups a 0.96, b 0, c 0.8 -> 1;  b: a 0.8, b 0.96, c 0.36 -> 1;  c: a 0.6, b 0.28, c 0.48 -> 2.
    assert result["path"] == "several captions per video"
    assert_metrics(result["t2v"], metrics(50, 100, 100, 1, 7 / 4))
    assert_metrics(result["v2t"], metrics(200 / 3, 100, 100, 1.0, 4 / 3))
    assert (result["n_videos"], result["n_captions"], result["n_captions_skipped"]) == (3, 4, 2)
    assert result["n_videos_without_captions"] == 0
    assert all(type(v) is float for block in ("t2v", "v2t") for v in result[block].values())


def test_eval_command_prints_the_metrics_as_json_and_refuses_with_a_reason(index_dir, tmp_path, capsys):
    assert cli_json(capsys, "eval", "--embeddings", str(index_dir), "--json") == evaluate(str(index_dir))
    assert "holds no embeddings" in cli_error(capsys, "eval", "--embeddings", str(tmp_path / "nothing"))


def test_evaluate_refuses_segmented_videos(index_dir):
    write_videos(index_dir / "videos", [{"video_id": "b", "segment": 1, "embedding": [0.0, 1.0, 0.0]}])
    with pytest.raises(ValueError, match="'b' has several segment rows.*without --segment-seconds"):
        evaluate(str(index_dir))


@pytest.mark.parametrize("missing", ["videos", "captions"])
def test_evaluate_refuses_a_directory_without_embeddings(tmp_path, missing):
    if missing != "videos":
        write_videos(tmp_path / "videos", [{"video_id": "a", "embedding": [1.0, 0.0, 0.0]}])
    with pytest.raises(ValueError, match=f"{missing} holds no embeddings"):
        evaluate(str(tmp_path))


# The paper's own evaluation code run on fixed embeddings (tests/fixtures/make_eval_reference.py).
OFFICIAL = json.loads((Path(__file__).parents[1] / "fixtures" / "eval_reference.json").read_text())["cases"]


@pytest.mark.parametrize("case", sorted(OFFICIAL))
def test_eval_equals_the_papers_evaluation_code(case, tmp_path, capsys):
    data = OFFICIAL[case]
    dim = len(data["videos"][0])
    write_videos(tmp_path / "videos", [{"video_id": f"v{i:02d}", "embedding": vector}
                                       for i, vector in enumerate(data["videos"])], dim)
    write_captions(tmp_path / "captions", [(f"v{video:02d}", vector)
                                           for video, vector in zip(data["caption_video"], data["captions"])], dim)
    result = cli_json(capsys, "eval", "--embeddings", str(tmp_path), "--json")
    assert result["path"] == ("one caption per video" if case == "single" else "several captions per video")
    # The paper's text->video rates are float32 (torch sums); everything else is exact.
    assert result["t2v"] == pytest.approx(data["t2v"], rel=1e-6)
    assert result["v2t"] == pytest.approx(data["v2t"], rel=1e-9)

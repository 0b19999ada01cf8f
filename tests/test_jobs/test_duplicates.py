"""`vidx duplicates`: every pair of videos scoring at least --threshold, as a brute-force product of
their rows finds them (a pair exactly at the threshold in), the best-matching segments' start_s, groups
named by their smallest video_id; incremental (a copy of an old video added, a video removed, one
re-encoded), nothing written when nothing changed; a bad threshold refused in one line. On a real
local Ray, over real Parquet parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli import cli_error
from jobs.duplicates import duplicates
from storage.schema import DUPLICATING_KEY, MODEL_KEY, PAIR_KEY, VIDEO_KEY
from storage.table.compaction import compact
from storage.table.dataset import list_parts, read_live, write_part
from storage.table.runs import new_run_id

DIM = 64
MODEL = {"spec": {"name": "tiny"}, "fingerprint": "m"}
THRESHOLD = 0.5
SEGMENT_SECONDS = 2.0


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def near(vector: np.ndarray, seed: int, noise: float = 0.3) -> np.ndarray:
    return unit(vector + noise * unit(np.random.default_rng(seed).standard_normal(DIM)))


def library() -> dict[str, np.ndarray]:
    """video_id -> its rows' vectors (segments, DIM): unrelated videos, copies, re-used footage and a
    pair exactly at the threshold."""
    rng = np.random.default_rng(7)
    videos = {f"r{i:02d}": unit(rng.standard_normal((1, DIM))) for i in range(24)}
    videos["long"] = unit(rng.standard_normal((3, DIM)))  # three segments: 0, 2 and 4 s
    videos["clip"] = near(videos["long"][2], seed=1)[None]  # re-used: long's third segment
    videos["a"] = unit(rng.standard_normal((2, DIM)))
    videos["a_copy"] = np.stack([near(videos["a"][0], seed=2), near(videos["a"][1], seed=3)])
    videos["b_copy"] = near(videos["a_copy"][1], seed=4)[None]  # a group of three: a, a_copy, b_copy
    anchor, edge, below = np.zeros((3, DIM), np.float32)
    anchor[0], edge[:2] = 1, [0.5, np.sqrt(0.75)]  # edge scores exactly 0.5 with anchor
    below[[0, 2]] = [np.nextafter(np.float32(0.5), np.float32(0)), np.sqrt(0.75)]  # and below, just under it
    videos.update(anchor=anchor[None], edge=edge[None], below=below[None])
    return videos


def write_videos(index: Path, videos: dict[str, np.ndarray]) -> str:
    """One index run's part of `videos`, as vidx index writes rows (one per segment); its run id."""
    run_id = new_run_id()
    rows = [(v, s, vector) for v, vectors in videos.items() for s, vector in enumerate(vectors)]
    table = pa.table({
        VIDEO_KEY: [f"{v}#{s}" for v, s, _ in rows], "video_id": [v for v, _, _ in rows],
        "segment": pa.array([s for _, s, _ in rows], pa.int32()), "start_s": [SEGMENT_SECONDS * s for _, s, _ in rows],
        "status": ["ok"] * len(rows), "run_id": [run_id] * len(rows),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.stack([r for *_, r in rows]).ravel()), DIM)})
    write_part(table.replace_schema_metadata({MODEL_KEY: json.dumps(MODEL)}), str(index / "videos"), VIDEO_KEY)
    return run_id


def brute_force(videos: dict[str, np.ndarray], threshold: float) -> dict[tuple[str, str], tuple]:
    """(video_id, duplicate_id) -> (score, segment, duplicate_segment): the best pair of rows of every
    pair of videos scoring at least `threshold` in float64, ties to the smaller segments."""
    expected = {}
    for a, b in ((a, b) for a in videos for b in videos if a < b):
        scores = videos[a].astype(np.float64) @ videos[b].astype(np.float64).T
        best = max(np.ndindex(scores.shape), key=lambda ij: (scores[ij], -ij[0], -ij[1]))
        if scores[best] >= threshold:
            expected[(a, b)] = (scores[best], *best)
    return expected


def groups_of(pairs) -> dict[str, str]:
    """video_id -> the smallest video_id of its connected component."""
    group = {}
    for a, b in pairs:
        members = {a, b} | {v for v, g in group.items() if g in (group.get(a), group.get(b))}
        group.update({v: min(members) for v in members})
    return group


def stored(index: Path) -> dict[tuple[str, str], tuple]:
    rows = read_live(str(index / "duplicates" / "pairs"), PAIR_KEY).to_pylist()
    return {(r["video_id"], r["duplicate_id"]): (r["score"], r["segment"], r["duplicate_segment"]) for r in rows}


def stored_groups(index: Path) -> dict[str, str]:
    groups = pq.read_table(index / "duplicates" / "groups.parquet")
    return dict(zip(groups["video_id"].to_pylist(), groups["duplicate_group"].to_pylist()))


def assert_found(index: Path, videos: dict[str, np.ndarray]) -> None:
    expected, got = brute_force(videos, THRESHOLD), stored(index)
    assert got.keys() == expected.keys()
    for pair, (score, *segments) in expected.items():
        assert got[pair][0] == pytest.approx(score, abs=1e-12) and list(got[pair][1:]) == segments, pair
    assert stored_groups(index) == groups_of(expected)


def files(index: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (index / "duplicates").rglob("*") if p.is_file()}


@pytest.mark.parametrize("method", ["exact", "ivf"])
def test_pairs_equal_a_brute_force_product_of_the_rows(local_ray, tmp_path, method):
    videos = library()
    write_videos(tmp_path, videos)
    stats = duplicates(str(tmp_path), threshold=THRESHOLD, method=method)
    rows = sum(len(vectors) for vectors in videos.values())
    assert (stats["videos"], stats["rows"], stats["videos_compared"]) == (len(videos), rows, len(videos))
    assert_found(tmp_path, videos)
    pairs = read_live(str(tmp_path / "duplicates" / "pairs"), PAIR_KEY)
    by_pair = {(r["video_id"], r["duplicate_id"]): r for r in pairs.to_pylist()}
    assert by_pair[("anchor", "edge")]["score"] == THRESHOLD and ("anchor", "below") not in by_pair
    reused = by_pair[("clip", "long")]  # the clip matched long's third segment
    assert (reused["start_s"], reused["duplicate_segment"], reused["duplicate_start_s"]) == (0.0, 2, 4.0)
    assert stored_groups(tmp_path)["b_copy"] == "a"
    assert stats["groups"] == len(set(groups_of(brute_force(videos, THRESHOLD)).values()))
    settings = json.loads(pq.read_schema(list_parts(str(tmp_path / "duplicates" / "pairs"))[0]).metadata[
        DUPLICATING_KEY.encode()])
    assert settings["threshold"] == THRESHOLD and settings["method"] == method
    assert json.loads(Path(stats["stats_file"]).read_text())["command"] == "duplicates"


def test_duplicates_are_incremental(local_ray, tmp_path):
    videos = library()
    write_videos(tmp_path, videos)
    duplicates(str(tmp_path), threshold=THRESHOLD)
    before = files(tmp_path)
    again = duplicates(str(tmp_path), threshold=THRESHOLD)  # nothing changed: nothing compared or written
    assert (again["videos_compared"], again["pairs_found"], again["groups_written"]) == (0, 0, False)
    assert files(tmp_path) == before

    videos["r03_copy"] = near(videos["r03"][0], seed=9)[None]  # a night adds a copy of an old video
    write_videos(tmp_path, {"r03_copy": videos["r03_copy"]})
    added = duplicates(str(tmp_path), threshold=THRESHOLD)
    assert (added["videos_compared"], added["pairs_found"], added["pairs_dropped"]) == (1, 1, 0)
    assert added["method_used"] == "exact"  # one row: multiplied, not worth indexing the library for
    assert_found(tmp_path, videos)
    assert stored_groups(tmp_path)["r03_copy"] == "r03"
    after = files(tmp_path)
    assert all(after.get(path) == mtime for path, mtime in before.items() if "/pairs/" in path)  # not rewritten

    gone = [pair for pair in brute_force(videos, THRESHOLD) if "a_copy" in pair]
    del videos["a_copy"]  # removed from the library (as vidx index drops a video): its pairs go
    compact(str(tmp_path / "videos"), pa.array(list(videos)), VIDEO_KEY)
    removed = duplicates(str(tmp_path), threshold=THRESHOLD)
    assert (removed["videos_compared"], removed["videos_removed"]) == (0, 1)
    assert removed["pairs_dropped"] == len(gone) >= 2
    assert_found(tmp_path, videos)

    videos["clip"] = unit(np.random.default_rng(11).standard_normal((1, DIM)))  # re-encoded: no longer a copy
    videos["r05_reused"] = unit(np.random.default_rng(12).standard_normal((6, DIM)))
    videos["r05_reused"][4] = near(videos["r05"][0], seed=13)  # and a new video re-uses r05 at 8 s
    write_videos(tmp_path, {"clip": videos["clip"], "r05_reused": videos["r05_reused"]})
    night = duplicates(str(tmp_path), threshold=THRESHOLD)
    assert (night["videos_compared"], night["method_used"]) == (2, "ivf")  # 7 rows: the library indexed
    assert_found(tmp_path, videos)
    assert stored(tmp_path)[("r05", "r05_reused")][1:] == (0, 4)


@pytest.mark.parametrize("threshold", ["0", "1.5", "-0.2"])
def test_a_bad_threshold_is_refused_in_one_line(tmp_path, capsys, threshold):
    line = cli_error(capsys, "duplicates", "--embeddings", str(tmp_path), "--threshold", threshold)
    assert line.startswith(f"--threshold {float(threshold)!r}: should be")


def test_a_threshold_that_finds_too_many_pairs_is_refused_in_one_line(local_ray, tmp_path, capsys, monkeypatch):
    from jobs.pipeline import duplicates_run

    monkeypatch.setattr(duplicates_run, "MAX_PAIRS_PER_VIDEO", 1)
    write_videos(tmp_path, {f"v{i}": unit(np.ones((1, DIM)) + 0.01 * i) for i in range(6)})  # all alike
    line = cli_error(capsys, "duplicates", "--embeddings", str(tmp_path), "--threshold", "0.9")
    assert line.startswith("--threshold 0.9 finds more than 6 pairs of videos") and "raise it" in line
    assert not (tmp_path / "duplicates" / "compared.parquet").exists()

"""`vidx search` against an index loaded into each engine: answers equal to exact search over the
Parquet (text->video, video->video, video->text, a corpus as the target), clear refusals."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from cli import cli_error, cli_json
from corpora import FORMATS, PHRASES, brute_force_tags
from jobs.load import load
from jobs.query import query_table
from jobs.server.app import create_app
from storage.schema import TEXT_KEY
from storage.table.dataset import write_part


def run_search(capsys, *args: str) -> list[dict]:
    return cli_json(capsys, "search", *args, "--json")


def brute_force(table: pa.Table, vector: np.ndarray, key: str, k: int) -> tuple[list[str], np.ndarray]:
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    scores = vectors @ vector
    order = np.argsort(-scores, kind="stable")[:k]
    return [table[key][int(i)].as_py() for i in order], scores[order]


def test_text_to_video_equals_brute_force_over_the_parquet(loaded, tiny_model, capsys):
    output, db = loaded
    hits = run_search(capsys, "--db", db, "--text", "a red circle moves to the left", "-k", "8")
    table = pq.read_table(output / "videos")
    keys, scores = brute_force(table, tiny_model.encode_text(["a red circle moves to the left"])[0], "key", 8)
    assert [h["key"] for h in hits] == keys
    np.testing.assert_allclose([h["score"] for h in hits], scores, atol=1e-4)
    assert {"video_id", "uri", "start_s", "end_s", "shape", "colour"} <= set(hits[0])


def test_video_to_text_and_video_to_video(loaded, tiny_model, capsys):
    output, db = loaded
    row = pq.read_table(output / "videos").sort_by("key").to_pylist()[0]
    captions = pq.read_table(output / "captions")
    hits = run_search(capsys, "--db", db, "--video-id", row["video_id"], "--target", "captions", "-k", "5")
    query = np.asarray(row["embedding"], np.float32)
    _, scores = brute_force(captions, query, "caption_id", 5)
    # Equal captions ("something moves up") have equal vectors: compare scores, not tie order.
    np.testing.assert_allclose([h["score"] for h in hits], scores, atol=1e-4)
    by_id = dict(zip(captions["caption_id"].to_pylist(), np.stack(captions["embedding"].to_numpy(False)) @ query))
    np.testing.assert_allclose([by_id[h["caption_id"]] for h in hits], scores, atol=1e-4)
    similar = run_search(capsys, "--db", db, "--video", row["uri"], "-k", "1", "--where", "segment == 0")
    assert similar[0]["video_id"] == row["video_id"]


def test_where_filter_returns_only_matching_rows(loaded, capsys):
    _, db = loaded
    hits = run_search(capsys, "--db", db, "--text", "something moves up", "-k", "50", "--where",
                      'direction == "up" and segment == 0')
    assert hits and all(h["direction"] == "up" and h["segment"] == 0 for h in hits)


def test_bad_filter_is_one_line_and_exit_2(loaded, capsys):
    _, db = loaded
    assert "--where" in cli_error(capsys, "search", "--db", db, "--text", "x", "--where", "colour === 'red'")


def test_a_collection_made_by_another_model_is_refused(tmp_path, db, capsys):
    vectors = np.eye(4, 256, dtype=np.float32)
    table = pa.table({"key": ["a#0", "b#0", "c#0", "d#0"], "video_id": ["a", "b", "c", "d"], "run_id": ["r"] * 4,
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 256)})
    model = b'{"spec": {"name": "tiny"}, "fingerprint": "other"}'
    write_part(table.replace_schema_metadata({b"vidx.model": model}), str(tmp_path / "index" / "videos"), "key")
    load(str(tmp_path / "index"), db)
    line = cli_error(capsys, "search", "--db", db, "--text", "a dog")
    assert "fingerprint other" in line and "re-index" in line


# --- The same index on milvus-lite and on a Milvus server (2.3.5): the same answers, equal to exact search ---

def exact_top_k(table: pa.Table, vector: np.ndarray, key: str, k: int, where=lambda row: True) -> list[tuple]:
    rows = [r for r in table.to_pylist() if where(r)]
    scores = np.stack([r["embedding"] for r in rows]) @ vector
    return [(rows[i][key], float(scores[i])) for i in np.argsort(-scores, kind="stable")[:k]]


def assert_same_ranking(hits: list[dict], expected: list[tuple], key: str) -> None:
    assert [h[key] for h in hits] == [k for k, _ in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in expected], atol=1e-4)


@pytest.fixture(scope="module")
def videos(served_index) -> pa.Table:
    return pq.read_table(served_index / "videos")


def test_both_engines_answer_every_query_kind_as_exact_search(served_index, videos, lite_db, server_db_loaded,
                                                              tiny_model, capsys):
    text = tiny_model.encode_text(["a green square moves up"])[0]
    first = videos.sort_by("key").to_pylist()[0]
    searches = [  # (arguments, reference top-k)
        (["--text", "a green square moves up", "-k", "6"], exact_top_k(videos, text, "key", 6)),
        (["--text", "a green square moves up", "-k", "6", "--where", "segment == 0"],
         exact_top_k(videos, text, "key", 6, lambda r: r["segment"] == 0)),
        (["--video-id", first["video_id"], "-k", "5"],
         exact_top_k(videos, np.asarray(first["embedding"], np.float32), "key", 5)),
        (["--video", first["uri"], "-k", "3"], None),  # decoded again: the video itself comes first
    ]
    for args, expected in searches:
        answers = [run_search(capsys, "--db", db, *args) for db in (lite_db, server_db_loaded)]
        if expected is None:
            assert answers[0][0]["video_id"] == answers[1][0]["video_id"] == first["video_id"]
            expected = [(h["key"], h["score"]) for h in answers[0]]
        for hits in answers:
            assert_same_ranking(hits, expected, "key")


def test_both_engines_answer_video_to_text_as_exact_search(served_index, videos, lite_db, server_db_loaded, capsys):
    captions = pq.read_table(served_index / "captions")
    row = videos.sort_by("key").to_pylist()[0]
    expected = exact_top_k(captions, np.asarray(row["embedding"], np.float32), "caption_id", 5)
    for db in (lite_db, server_db_loaded):
        hits = run_search(capsys, "--db", db, "--video-id", row["video_id"], "--target", "captions", "-k", "5")
        # Equal captions have equal vectors: compare scores, not the order of ties.
        np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in expected], atol=1e-4)


# --- A corpus (`vidx texts`) as the target ---

@pytest.mark.parametrize("corpus", ["vocab", *(f"served_{fmt}" for fmt in FORMATS)])
def test_a_corpus_is_searchable_from_the_cli_sql_and_http(served_corpus, capsys, tmp_path, corpus):
    index, db = served_corpus
    video = "synth_11_00003"
    ranked = sorted((rank, t) for v, segment, t, rank in brute_force_tags(index, corpus, len(PHRASES), True)
                    if (v, segment) == (video, 0))  # a stored video is searched for by its first segment
    expected = [t for _, t in ranked]
    hits = cli_json(capsys, "search", "--db", db, "--video-id", video, "--target", corpus, "-k", "3", "--json")
    assert [hit[TEXT_KEY] for hit in hits] == expected[:3]
    rows = query_table(db, f"SELECT text_id, text, score FROM {corpus} "
                           f"ORDER BY similarity(ID('{video}')) DESC LIMIT 3").to_pylist()
    assert [r[TEXT_KEY] for r in rows] == [hit[TEXT_KEY] for hit in hits]
    with TestClient(create_app(db, cache_dir=tmp_path)) as client:
        library = client.get("/library").json()
        assert library["corpora"][corpus]["rows"] == len(PHRASES)
        answer = client.post("/search", json={"video_id": video, "target": corpus, "k": 3}).json()
        assert [hit[TEXT_KEY] for hit in answer] == [hit[TEXT_KEY] for hit in hits]
        if corpus != "served_txt":  # the tables' metadata is served beside each text
            category = query_table(db, f"SELECT category, count(*) AS n FROM {corpus} GROUP BY category").to_pylist()
            assert {r["category"]: r["n"] for r in category} == {"motion": 1, "object": len(PHRASES) - 1}

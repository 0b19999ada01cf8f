"""The same index on milvus-lite and on a Milvus server (2.3.5): the same answers, equal to exact
search over the Parquet, through the same commands; and what a server cannot store, refused."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.__main__ import main
from jobs.load import load
from storage.table.dataset import write_part
from storage.milvus.store import VectorStore

SQL = [
    "SELECT key, score FROM videos ORDER BY similarity(TEXT('a blue triangle moves down')) DESC LIMIT 8",
    "SELECT key, colour, score FROM videos WHERE colour IN ('red', 'blue') AND segment = 0 "
    "ORDER BY similarity(TEXT('a blue triangle')) DESC LIMIT 5",
    "SELECT key, score FROM videos WHERE start_s >= 2 ORDER BY similarity(ID('synth_11_00003')) DESC LIMIT 6",
]


def run(capsys, *args: str) -> list[dict]:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


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
        answers = [run(capsys, "search", "--db", db, *args) for db in (lite_db, server_db_loaded)]
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
        hits = run(capsys, "search", "--db", db, "--video-id", row["video_id"], "--target", "captions", "-k", "5")
        # Equal captions have equal vectors: compare scores, not the order of ties.
        np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in expected], atol=1e-4)


def test_both_engines_answer_sql_like_queries_alike(lite_db, server_db_loaded, capsys):
    for sql in SQL:
        lite, server = (run(capsys, "query", "--db", db, sql) for db in (lite_db, server_db_loaded))
        assert [r["key"] for r in lite] == [r["key"] for r in server], sql
        np.testing.assert_allclose([r["score"] for r in lite], [r["score"] for r in server], atol=1e-4)
    scan = "SELECT key, colour, duration_s FROM videos WHERE colour <> 'red' AND duration_s > 1 LIMIT 1000"
    lite, server = (run(capsys, "query", "--db", db, scan) for db in (lite_db, server_db_loaded))
    assert sorted(lite, key=lambda r: r["key"]) == sorted(server, key=lambda r: r["key"])


def test_is_null_filters_on_a_server_without_nullable_fields_are_one_line_and_exit_2(server_db_loaded, capsys):
    sql = "SELECT key FROM videos WHERE background IS NOT NULL LIMIT 5"
    assert main(["query", "--db", server_db_loaded, sql]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vidx query: error: Milvus refused") and "is null" in err


@pytest.fixture(scope="module")
def index_with_an_error(tmp_path_factory, good_videos, local_ray) -> str:
    """Whole videos (segment_seconds null) and an error row (a null `error` was what Milvus 2.3 refused)."""
    from jobs.index import index

    work = tmp_path_factory.mktemp("one_good_one_missing")
    manifest = work / "m.jsonl"
    manifest.write_text(f'{{"uri": "{good_videos["h264"]}", "captions": ["a clip"]}}\n'
                        f'{{"uri": "{work / "missing.mp4"}"}}\n')
    index(str(manifest), str(work / "out"), model="tiny")
    return str(work / "out")


def test_an_index_run_with_failed_videos_loads_into_each_engine(index_with_an_error, db):
    result = load(index_with_an_error, db)
    assert result["videos"]["rows"] == 1 and result["captions"]["rows"] == 1
    assert VectorStore(db).model_record("videos")["spec"]["name"] == "tiny"


def test_a_column_the_server_cannot_store_is_one_line_and_exit_2(tmp_path, server_db, capsys):
    vectors = np.eye(3, 8, dtype=np.float32)
    table = pa.table({"key": ["a#0", "b#0", "c#0"], "video_id": ["a", "b", "c"], "status": ["ok"] * 3,
                      "run_id": ["r"] * 3, "channel": ["news", None, "sport"],
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 8)})
    write_part(table.replace_schema_metadata({b"vidx.model": b'{"fingerprint": "f"}'}), str(tmp_path / "videos"), "key")
    assert main(["load", "--embeddings", str(tmp_path), "--db", server_db]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vidx load: error: column 'channel' is empty (null) in 1 of")
    assert "Milvus 2.3.5 has no nullable fields" in err and "Traceback" not in err

"""The search command against an index loaded into milvus-lite: exact answers, clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.__main__ import main
from jobs.load import load
from storage.table.dataset import write_part


def run_search(capsys, *args: str) -> list[dict]:
    assert main(["search", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


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
    assert main(["search", "--db", db, "--text", "x", "--where", "colour === 'red'"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vidx search: error:") and "--where" in err and "Traceback" not in err


def test_a_collection_made_by_another_model_is_refused(tmp_path, db, capsys):
    vectors = np.eye(4, 256, dtype=np.float32)
    table = pa.table({"key": ["a#0", "b#0", "c#0", "d#0"], "video_id": ["a", "b", "c", "d"], "run_id": ["r"] * 4,
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 256)})
    model = b'{"spec": {"name": "tiny"}, "fingerprint": "other"}'
    write_part(table.replace_schema_metadata({b"vidx.model": model}), str(tmp_path / "index" / "videos"), "key")
    load(str(tmp_path / "index"), db)
    assert main(["search", "--db", db, "--text", "a dog"]) == 2
    err = capsys.readouterr().err
    assert "fingerprint other" in err and "re-index" in err

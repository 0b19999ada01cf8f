"""Live rows (storage/table/live_rows.py), what a load serves: each video's rows of its newest run,
each key once, read a bounded batch at a time; and the one model that made them."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pyarrow as pa
import pytest

from embeddings import DIM, MODEL, embeddings_table, write
from storage.table import live_rows
from storage.table.dataset import DatasetError, read_live
from storage.table.live_rows import scan_live

COLUMNS = ["key", "video_id", "run_id", "embedding"]


def segments(video_segments: dict[str, int], run_id: str, model: dict | None = MODEL, status: str = "ok") -> pa.Table:
    """Rows of videos in segments (video_id -> how many), their vectors telling run and row apart."""
    keys = [f"{video}#{s}" for video, n in video_segments.items() for s in range(n)]
    n = len(keys)
    vectors = np.random.default_rng(zlib.crc32(" ".join([run_id, *keys]).encode())).standard_normal((n, DIM))
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).reshape(-1)), DIM)
    table = pa.table({"key": keys, "video_id": [k.split("#")[0] for k in keys], "status": [status] * n,
                      "run_id": [run_id] * n, "embedding": embedding})
    return table if model is None else table.replace_schema_metadata({b"vidx.model": json.dumps(model).encode()})


def read_all(live) -> pa.Table:
    return pa.concat_tables(live.batches(COLUMNS, 1000)).sort_by("key")


def test_a_video_serves_the_rows_of_its_newest_run_only(tmp_path):
    first = segments({"a": 3, "b": 2, "c": 1}, "run-1")
    again = segments({"a": 1}, "run-2")  # a re-encoded: now one segment (its #1 and #2 are gone)
    parts = write(tmp_path / "videos", first, again)
    rows = read_all(scan_live(parts))
    assert rows["key"].to_pylist() == ["a#0", "b#0", "b#1", "c#0"]
    assert rows["run_id"].to_pylist() == ["run-2", "run-1", "run-1", "run-1"]
    by_key = {r["key"]: r["embedding"] for r in again.to_pylist()} | {r["key"]: r["embedding"] for r in
                                                                       first.to_pylist() if r["video_id"] != "a"}
    assert {r["key"]: r["embedding"] for r in rows.to_pylist()} == by_key  # each row's own vector, once


def test_a_key_in_two_parts_of_one_run_is_served_once(tmp_path):
    rows = segments({"a": 2, "b": 2}, "run-1")
    parts = write(tmp_path / "videos", rows, rows.slice(0, 1))  # as a compaction killed before it deleted
    live = scan_live(parts)
    assert live.rows.num_rows == 4 and read_all(live)["key"].to_pylist() == ["a#0", "a#1", "b#0", "b#1"]


def test_only_the_rows_with_the_status_asked_for(tmp_path):
    parts = write(tmp_path / "videos", segments({"a": 1, "b": 1}, "run-1"),
                  segments({"c": 1}, "run-1", status="error"))
    assert read_all(scan_live(parts, status="ok"))["video_id"].to_pylist() == ["a", "b"]
    assert read_all(scan_live(parts))["video_id"].to_pylist() == ["a", "b", "c"]


def test_a_dataset_without_parts_has_no_live_rows(tmp_path):
    assert scan_live(str(tmp_path / "videos")) is None


@pytest.mark.parametrize("rows_per_batch", [1, 7, 64])
@pytest.mark.parametrize("read_ahead_bytes", [1 << 30, 1], ids=["parts-read-ahead", "parts-streamed-alone"])
def test_batches_hold_fewer_than_twice_the_rows_asked_for_and_every_live_row_once(tmp_path, monkeypatch,
                                                                                  rows_per_batch, read_ahead_bytes):
    monkeypatch.setattr(live_rows, "READ_AHEAD_BYTES", read_ahead_bytes)
    big = segments({f"v{i:02d}": 5 for i in range(30)}, "run-1")  # one part of 150 rows
    small = [segments({f"w{i}": 1}, "run-1") for i in range(9)]  # and parts of one row
    parts = write(tmp_path / "videos", big, *small)
    batches = list(scan_live(parts).batches(["key", "embedding"], rows_per_batch))
    assert all(0 < batch.num_rows < 2 * rows_per_batch for batch in batches)
    assert all(batch.num_rows >= rows_per_batch for batch in batches[:-1])
    keys = [key for batch in batches for key in batch["key"].to_pylist()]
    assert len(keys) == len(set(keys)) == 159


@pytest.mark.parametrize("read_ahead_bytes", [1 << 30, 1], ids=["parts-read-ahead", "parts-streamed-alone"])
def test_live_rows_stream_in_batches_equal_to_a_whole_read(tmp_path, monkeypatch, read_ahead_bytes):
    monkeypatch.setattr(live_rows, "READ_AHEAD_BYTES", read_ahead_bytes)
    monkeypatch.setattr(live_rows, "STREAM_BUFFER", 256)  # a column's pages read a few at a time
    first = embeddings_table(40, run_id="run-1")
    second = embeddings_table(10, seed=5, run_id="run-2")  # videos 0-9 again, newer
    parts = write(tmp_path / "videos", first, second, first.slice(20, 5).replace_schema_metadata(first.schema.metadata))
    live = scan_live(parts, status="ok")
    batches = list(live.batches(["key", "run_id", "embedding"], 7))
    streamed = pa.concat_tables(batches).sort_by("key")
    whole = read_live(parts).select(["key", "run_id", "embedding"]).sort_by("key")
    assert streamed.equals(whole) and live.rows.num_rows == 40
    assert all(b.num_rows >= 7 for b in batches[:-1])
    assert live.model() == MODEL


def test_the_model_is_that_of_the_live_rows(tmp_path):
    other = {"spec": {"name": "tiny"}, "fingerprint": "b"}
    parts = write(tmp_path / "videos", segments({"a": 1, "b": 1}, "run-1"), segments({"a": 1, "b": 1}, "run-2", other))
    assert scan_live(parts).model() == other  # every video re-encoded: the old model's rows are not live


def test_live_rows_of_two_models_are_refused(tmp_path):
    other = {"spec": {"name": "tiny"}, "fingerprint": "b"}
    parts = write(tmp_path / "videos", segments({"a": 1, "b": 1}, "run-1"), segments({"a": 1}, "run-2", other))
    with pytest.raises(DatasetError, match="the live rows were made by 2 different models; run vidx index again"):
        scan_live(parts).model()


def test_rows_without_a_model_record_are_refused(tmp_path):
    parts = write(tmp_path / "videos", segments({"a": 1}, "run-1", model=None))
    with pytest.raises(DatasetError, match="carry no model record"):
        scan_live(parts).model()

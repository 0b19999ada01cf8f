"""The plan: what an index run encodes, reuses, refreshes and deletes, and which error rows it
retries (transient ones always, permanent ones with --retry-errors or a changed file)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.table.index_plan import make_plan, refresh_metadata
from storage.table.compaction import compact
from storage.table.dataset import conform, list_parts, read_live, write_part
from storage.table.live_rows import LiveRows
from storage.schema import CAPTIONS, VIDEOS, caption_schema, video_schema
from storage.table.files import list_stamps
from storage.table.manifest import validate_manifest

DIM = 4


def make_manifest(tmp_path, n: int = 4, genres=None, captions=None) -> pa.Table:
    uris = []
    for i in range(n):
        path = tmp_path / "videos" / f"v{i}.mp4"
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            path.write_bytes(f"video {i}".encode())
        uris.append(str(path))
    columns = {"uri": uris, "genre": genres or ["t"] * n}
    if captions is not None:
        columns["captions"] = captions
    return validate_manifest(pa.table(columns), "test")


def store_videos(output: str, manifest: pa.Table, status=None, error_kind=None, fingerprint: str = "m1",
                 segment_seconds=None, run_id: str = "r1", dim: int = DIM, model: dict | None = None) -> None:
    n = manifest.num_rows
    metadata = manifest.drop_columns(["captions"])
    columns = {name: metadata[name] for name in metadata.column_names}
    status = status or ["ok"] * n
    columns.update({
        "key": pa.array([f"{v}#0" for v in manifest["video_id"].to_pylist()]),
        "file_stat": list_stamps(manifest["uri"]),
        "model_fingerprint": pa.array([fingerprint] * n), "segment_seconds": pa.array([segment_seconds] * n, pa.float64()),
        "status": pa.array(status), "error_kind": pa.array(error_kind or [None] * n, pa.string()),
        "run_id": pa.array([run_id] * n),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(n * dim, np.float32)), dim)})
    write_part(conform(columns, n, video_schema(dim, metadata.schema, model or {})), f"{output}/{VIDEOS}", "key")


def store_captions(output: str, manifest: pa.Table, fingerprint: str = "m1") -> None:
    rows = [(f"{v}#{i}", v, t) for v, texts in zip(manifest["video_id"].to_pylist(), manifest["captions"].to_pylist())
            for i, t in enumerate(texts)]
    columns = {"caption_id": pa.array([r[0] for r in rows]), "video_id": pa.array([r[1] for r in rows]),
               "text": pa.array([r[2] for r in rows]), "model_fingerprint": pa.array([fingerprint] * len(rows)),
               "run_id": pa.array(["r1"] * len(rows))}
    write_part(conform(columns, len(rows), caption_schema(DIM, {})), f"{output}/{CAPTIONS}", "caption_id")


def plan_of(manifest: pa.Table, output: str, fingerprint: str = "m1", segment_seconds=None, retry_errors=False):
    return make_plan(manifest, f"{output}/{VIDEOS}", f"{output}/{CAPTIONS}", fingerprint, segment_seconds,
                     retry_errors)


def encoded(plan) -> list[str]:
    return sorted(plan.encode["video_id"].to_pylist())


def test_a_first_run_encodes_every_video_and_caption(tmp_path):
    manifest = make_manifest(tmp_path, captions=[["a", "b"], [], ["c"], None])
    plan = plan_of(manifest, str(tmp_path / "out"))
    assert encoded(plan) == ["v0", "v1", "v2", "v3"] and plan.encode["_row"].to_pylist() == [0, 1, 2, 3]
    assert plan.encode["file_stat"].to_pylist() == list_stamps(manifest["uri"]).to_pylist()
    assert plan.captions.to_pylist() == [{"caption_id": "v0#0", "video_id": "v0", "text": "a"},
                                         {"caption_id": "v0#1", "video_id": "v0", "text": "b"},
                                         {"caption_id": "v2#0", "video_id": "v2", "text": "c"}]


def test_unchanged_videos_are_reused(tmp_path):
    manifest, output = make_manifest(tmp_path), str(tmp_path / "out")
    store_videos(output, manifest)
    plan = plan_of(manifest, output)
    assert (plan.encode.num_rows, plan.reused, len(plan.refresh), plan.deleted) == (0, 4, 0, [])


@pytest.mark.parametrize("retry_errors, expected", [(False, ["v1"]), (True, ["v1", "v2", "v3"])],
                         ids=["default", "retry-errors"])
def test_transient_errors_are_always_retried_permanent_ones_on_request(tmp_path, retry_errors, expected):
    manifest, output = make_manifest(tmp_path), str(tmp_path / "out")
    # v3: an error row written before error kinds were recorded counts as permanent.
    store_videos(output, manifest, status=["ok", "error", "error", "error"],
                 error_kind=[None, "transient", "permanent", None])
    plan = plan_of(manifest, output, retry_errors=retry_errors)
    assert encoded(plan) == expected
    assert plan.errors_retried == plan.changed == len(expected) and plan.reused == 4 - len(expected)


def test_a_changed_file_model_or_sampling_is_encoded_again(tmp_path):
    manifest, output = make_manifest(tmp_path), str(tmp_path / "out")
    store_videos(output, manifest, status=["ok", "ok", "error", "ok"], error_kind=[None, None, "permanent", None])
    (tmp_path / "videos" / "v2.mp4").write_bytes(b"fixed")  # a permanent error whose file changed
    (tmp_path / "videos" / "v0.mp4").write_bytes(b"new content")
    assert encoded(plan_of(manifest, output)) == ["v0", "v2"]
    assert encoded(plan_of(manifest, output, fingerprint="m2")) == ["v0", "v1", "v2", "v3"]
    assert encoded(plan_of(manifest, output, segment_seconds=5.0)) == ["v0", "v1", "v2", "v3"]


def test_metadata_changes_refresh_rows_without_encoding(tmp_path):
    output = str(tmp_path / "out")
    store_videos(output, make_manifest(tmp_path, genres=["a", "b", None, "d"]))
    plan = plan_of(make_manifest(tmp_path, genres=["a", "B", None, "d"]), output)
    assert (plan.encode.num_rows, plan.refresh.to_pylist(), plan.reused) == (0, [1], 3)
    with_column = make_manifest(tmp_path, genres=["a", "b", None, "d"]).append_column("rating", pa.array([1, 2, 3, 4]))
    assert plan_of(with_column, output).refresh.to_pylist() == [0, 1, 2, 3]  # a column their rows lack


def test_a_metadata_refresh_reads_and_rewrites_only_the_part_holding_the_edited_video(tmp_path, tiny_model,
                                                                                     monkeypatch):
    output = str(tmp_path / "out")
    before = make_manifest(tmp_path, genres=["a", "b", "c", "d"])
    videos_dir = f"{output}/{VIDEOS}"
    for half in (before.slice(0, 2), before.slice(2, 2)):  # two parts: v0, v1 and v2, v3
        store_videos(output, half, fingerprint=tiny_model.fingerprint, dim=tiny_model.dim, model=tiny_model.record)
    parts = list_parts(videos_dir)
    edited = make_manifest(tmp_path, genres=["a", "B", "c", "d"])
    metadata = edited.drop_columns(["captions"])
    plan = plan_of(edited, output, fingerprint=tiny_model.fingerprint)
    opened = []
    part_batches = LiveRows._part_batches
    monkeypatch.setattr(LiveRows, "_part_batches", lambda self, i, *a: opened.append(self.paths[i]) or
                        part_batches(self, i, *a))
    schema = video_schema(tiny_model.dim, metadata.schema, tiny_model.record)
    assert refresh_metadata(plan, metadata, videos_dir, schema, "r2", 256) == 1
    assert opened == [p for p in parts if "v1#0" in pq.read_table(p, columns=["key"])["key"].to_pylist()]
    compact(videos_dir, None, "key")
    rows = read_live(videos_dir).sort_by("key")
    assert rows["genre"].to_pylist() == ["a", "B", "c", "d"] and rows["run_id"].to_pylist() == ["r1", "r2", "r1", "r1"]
    assert len(set(parts) & set(list_parts(videos_dir))) == 1  # the part of v2 and v3 was never rewritten


def test_a_nan_in_the_metadata_does_not_refresh_on_every_run(tmp_path):
    output = str(tmp_path / "out")
    manifest = make_manifest(tmp_path).append_column("score_x", pa.array([math.nan, 1.5, None, 2.0]))
    store_videos(output, manifest)  # NaN is stored as null
    assert plan_of(manifest, output).reused == 4


def test_videos_gone_from_the_manifest_are_deleted(tmp_path):
    manifest, output = make_manifest(tmp_path), str(tmp_path / "out")
    store_videos(output, manifest)
    plan = plan_of(manifest.slice(0, 2), output)
    assert (plan.deleted, plan.reused, plan.encode.num_rows) == (["v2", "v3"], 2, 0)


def test_captions_are_reused_per_video_only_when_exactly_the_same(tmp_path):
    output = str(tmp_path / "out")
    before = make_manifest(tmp_path, captions=[["a", "b"], ["c"], ["d", "e"], ["f"]])
    store_captions(output, before)
    after = make_manifest(tmp_path, captions=[["a", "b"], ["c", "new"], ["d"], ["F"]])
    plan = plan_of(after, output)
    assert plan.captions_reused == 2
    assert plan.captions["caption_id"].to_pylist() == ["v1#0", "v1#1", "v2#0", "v3#0"]
    assert plan_of(after, output, fingerprint="m2").captions.num_rows == 6


"""`vidx index` end to end on a real local Ray: rows, errors, equality, incremental re-runs, `--seek
keyframe`, and manifests refused before any work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli import cli_error, cli_json
from encoders.video import decode_video
from jobs.__main__ import main
from media import GOOD_VIDEOS

BAD_KINDS = ["empty", "garbage", "text", "truncated", "truncated_faststart", "header_only", "image", "missing"]


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def mixed_manifest(tmp_path_factory, good_videos, bad_files) -> Path:
    rows = [{"uri": str(p), "video_id": f"good_{name}", "genre": "good", "rating": i, "captions": [f"video {name}"]}
            for i, (name, p) in enumerate(good_videos.items())]
    rows += [{"uri": str(bad_files[kind]), "video_id": f"bad_{kind}", "genre": "bad", "rating": -1}
             for kind in BAD_KINDS]
    return write_manifest(tmp_path_factory.mktemp("manifest") / "manifest.jsonl", rows)


def run_index(capsys, *args: str) -> dict:
    return cli_json(capsys, "index", "--model", "tiny", *args)


@pytest.fixture(scope="module")
def indexed(mixed_manifest, tmp_path_factory, local_ray) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("index")
    assert main(["index", "--model", "tiny", "--manifest", str(mixed_manifest), "--output", str(output),
                 "--batch-size", "3"]) == 0
    [record] = [json.loads(p.read_text()) for p in (output / "runs").glob("*.json")]
    return output, record


def test_one_ok_row_per_good_video_and_one_error_row_per_bad_file(indexed):
    output, record = indexed
    table = pq.read_table(output / "videos")
    rows = {r["video_id"]: r for r in table.select(["video_id", "key", "status", "error", "genre"]).to_pylist()}
    assert table.num_rows == len(GOOD_VIDEOS) + len(BAD_KINDS) == len(rows)
    for spec in GOOD_VIDEOS:
        assert rows[f"good_{spec.name}"]["status"] == "ok" and rows[f"good_{spec.name}"]["error"] is None
    for kind in BAD_KINDS:
        row = rows[f"bad_{kind}"]
        assert row["status"] == "error" and row["error"] and "\n" not in row["error"]
        assert row["genre"] == "bad"
    assert record["stats"]["rows_ok"] == len(GOOD_VIDEOS) and record["stats"]["rows_error"] == len(BAD_KINDS)


def test_schema_metadata_and_vectors(indexed):
    output, record = indexed
    table = pq.read_table(output / "videos")
    dim = record["model"]["dim"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), dim)
    assert table.schema.field("rating").type == pa.int64() and table.schema.field("genre").type == pa.string()
    metadata = table.schema.metadata
    assert int(metadata[b"vidx.dim"]) == dim and json.loads(metadata[b"vidx.model"])["spec"]["name"] == "tiny"
    ok = table.filter(pa.compute.equal(table["status"], "ok"))
    vectors = np.stack(ok["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    errors = table.filter(pa.compute.equal(table["status"], "error"))
    assert errors["embedding"].null_count == errors.num_rows
    assert set(ok["content_fingerprint"].to_pylist()).isdisjoint({None})


def test_embeddings_equal_a_plain_loop_over_the_encoder(indexed, good_videos, tiny_model):
    output, _ = indexed
    table = pq.read_table(output / "videos").to_pylist()
    stored = {r["video_id"]: np.asarray(r["embedding"], np.float32) for r in table if r["status"] == "ok"}
    for name, path in good_videos.items():
        _, [segment] = decode_video(str(path), tiny_model.sampling, tiny_model.image_size)
        expected = tiny_model.encode_clips([segment.frames])[0]
        np.testing.assert_allclose(stored[f"good_{name}"], expected, atol=1e-5)


def test_captions_are_encoded_by_the_text_tower(indexed, tiny_model):
    output, _ = indexed
    captions = pq.read_table(output / "captions").to_pylist()
    assert len(captions) == len(GOOD_VIDEOS)
    for row in captions:
        assert row["caption_id"] == f"{row['video_id']}#0"
        np.testing.assert_allclose(row["embedding"], tiny_model.encode_text([row["text"]])[0], atol=1e-5)


def _snapshot(output: Path) -> dict:
    return {p.relative_to(output): (p.stat().st_mtime_ns, p.read_bytes()) for d in ("videos", "captions")
            for p in sorted((output / d).iterdir())}


def test_second_run_encodes_nothing_and_changes_no_file(indexed, mixed_manifest, capsys):
    output, _ = indexed
    before = _snapshot(output)
    stats = run_index(capsys, "--manifest", str(mixed_manifest), "--output", str(output))
    assert stats["encoded"] == 0 and stats["reused"] == len(GOOD_VIDEOS) + len(BAD_KINDS)
    assert stats["captions_encoded"] == 0
    assert _snapshot(output) == before
    assert Path(stats["stats_file"]).is_file()


def test_segments_give_one_row_per_segment(good_videos, tmp_path, local_ray, capsys):
    manifest = write_manifest(tmp_path / "m.jsonl", [{"uri": str(good_videos["long_gop"])},
                                                     {"uri": str(good_videos["h264"])}])
    stats = run_index(capsys, "--manifest", str(manifest), "--output", str(tmp_path / "out"),
                      "--segment-seconds", "2")
    rows = pq.read_table(tmp_path / "out" / "videos").sort_by("key").to_pylist()
    assert [(r["key"], r["start_s"], r["end_s"]) for r in rows] == [
        ("h264#0", 0.0, 2.0), ("long_gop#0", 0.0, 2.0), ("long_gop#1", 2.0, 4.0), ("long_gop#2", 4.0, 5.0)]
    assert stats["rows_ok"] == 4 and all(r["segment_seconds"] == 2.0 for r in rows)


def test_changed_model_or_sampling_re_encodes_and_replaces_rows(good_videos, tmp_path, local_ray, capsys):
    manifest = write_manifest(tmp_path / "m.jsonl", [{"uri": str(good_videos["h264"])}])
    output = str(tmp_path / "out")
    run_index(capsys, "--manifest", str(manifest), "--output", output)
    stats = run_index(capsys, "--manifest", str(manifest), "--output", output, "--segment-seconds", "1")
    assert stats["encoded"] == 1
    rows = pq.read_table(output + "/videos").to_pylist()
    assert sorted(r["key"] for r in rows) == ["h264#0", "h264#1"]  # the old whole-video row is gone


@pytest.mark.parametrize("problem, content, message", [
    ("no_uri", '{"path": "a.mp4"}\n', "no 'uri' column"),
    ("duplicate", '{"uri": "a.mp4", "video_id": "x"}\n{"uri": "b.mp4", "video_id": "x"}\n', "duplicate video_id 'x'"),
    ("unreadable", "{not json", "unreadable"),
    ("reserved", '{"uri": "a.mp4", "status": "new"}\n', "column 'status' is reserved"),
])
def test_unusable_manifest_stops_before_any_work(tmp_path, capsys, problem, content, message):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(content)
    line = cli_error(capsys, "index", "--model", "tiny", "--manifest", str(manifest), "--output", str(tmp_path / "out"))
    assert message in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("column", ["run_id", "error_kind", "_row", "duplicate_group"])
def test_a_manifest_column_the_dataset_uses_is_refused_in_one_line(tmp_path, capsys, column):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(f'{{"uri": "a.mp4", "{column}": "x"}}\n')
    line = cli_error(capsys, "index", "--model", "tiny", "--manifest", str(manifest), "--output", str(tmp_path / "out"))
    assert f"column {column!r} is reserved" in line


def test_new_content_under_an_old_mtime_is_re_encoded(good_videos, tmp_path, local_ray, capsys, tiny_model):
    video = tmp_path / "clip.mp4"
    video.write_bytes(good_videos["h264"].read_bytes())
    manifest = write_manifest(tmp_path / "m.jsonl", [{"uri": str(video)}])
    output = str(tmp_path / "out")
    run_index(capsys, "--manifest", str(manifest), "--output", output)
    mtime = video.stat().st_mtime_ns
    video.write_bytes(good_videos["vfr"].read_bytes())
    os.utime(video, ns=(mtime, mtime))  # as `cp -p` or `touch -d` would leave it
    stats = run_index(capsys, "--manifest", str(manifest), "--output", output)
    assert stats["encoded"] == 1
    [row] = pq.read_table(output + "/videos").to_pylist()
    _, [segment] = decode_video(str(video), tiny_model.sampling, tiny_model.image_size)
    np.testing.assert_allclose(row["embedding"], tiny_model.encode_clips([segment.frames])[0], atol=1e-5)


def test_metadata_only_change_rewrites_rows_without_encoding(good_videos, tmp_path, local_ray, capsys):
    rows = [{"uri": str(good_videos["h264"]), "genre": "old"}, {"uri": str(good_videos["vfr"]), "genre": "same"}]
    output = str(tmp_path / "out")
    run_index(capsys, "--manifest", str(write_manifest(tmp_path / "m.jsonl", rows)), "--output", output)
    before = {r["key"]: r for r in pq.read_table(output + "/videos").to_pylist()}
    rows[0]["genre"] = "new"
    stats = run_index(capsys, "--manifest", str(write_manifest(tmp_path / "m.jsonl", rows)), "--output", output)
    assert (stats["encoded"], stats["metadata_updated"], stats["reused"]) == (0, 1, 1)
    after = {r["key"]: r for r in pq.read_table(output + "/videos").to_pylist()}
    assert sorted(after) == sorted(before) == ["h264#0", "vfr#0"]
    assert after["h264#0"]["genre"] == "new" and after["vfr#0"]["genre"] == "same"
    assert after["h264#0"]["embedding"] == before["h264#0"]["embedding"]


def rows_by_key(output: Path) -> dict:
    table = pq.read_table(output / "videos")
    return {r["key"]: r for r in table.to_pylist()}


def test_keyframe_rows_record_the_keyframe_times_and_switching_mode_re_encodes(good_videos, bad_files, tmp_path,
                                                                               local_ray, capsys):
    """`--seek keyframe`: its rows say which frame times were used, and the two modes never mix in
    one dataset (the mode is part of the model fingerprint)."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"uri": str(p)}) + "\n" for p in
                                (good_videos["long_gop"], good_videos["h264"], bad_files["truncated"])))
    output = tmp_path / "out"
    run_index(capsys, "--manifest", str(manifest), "--output", str(output), "--segment-seconds", "2")
    exact = rows_by_key(output)
    stats = run_index(capsys, "--manifest", str(manifest), "--output", str(output), "--segment-seconds", "2",
                      "--seek", "keyframe")
    assert stats["encoded"] == 3 and stats["reused"] == 0  # another fingerprint: nothing reused
    keyframe = rows_by_key(output)
    assert exact.keys() == keyframe.keys()
    for key, row in keyframe.items():
        assert row["model_fingerprint"] != exact[key]["model_fingerprint"]
        if row["status"] == "error":
            assert row["sampled_times"] == [] and row["error"]
            continue
        assert row["sampled_frames"] == len(row["sampled_times"]) == len(exact[key]["sampled_times"])
        np.testing.assert_allclose(exact[key]["sampled_times"][0], row["start_s"], atol=0.05)
    # long_gop: 5 s at 30 fps with keyframes at frames 0, 32, 64, 96 and 128
    key_times = {round(i / 30, 6) for i in (0, 32, 64, 96, 128)}
    long_gop = [row for key, row in keyframe.items() if key.startswith("long_gop")]
    assert len(long_gop) == 3 and all({round(t, 6) for t in row["sampled_times"]} <= key_times for row in long_gop)
    record = json.loads((output / "runs" / f"{stats['stats_file'].rsplit('/', 1)[-1]}").read_text())
    assert record["config"]["seek"] == "keyframe"
    assert record["model"]["spec"]["sampling"] == {"seek": "keyframe"}
    assert run_index(capsys, "--manifest", str(manifest), "--output", str(output), "--segment-seconds", "2",
                     "--seek", "keyframe")["encoded"] == 0  # same mode again: incremental

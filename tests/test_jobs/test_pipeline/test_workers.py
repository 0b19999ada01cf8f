"""decode_item never fails its task: transient read errors are retried with backoff, anything
else becomes the video's error row with a one-line reason and its kind."""

from __future__ import annotations

import dataclasses

import fsspec
import pytest

import jobs.pipeline.workers
import storage.table.files
from flaky_s3 import FlakyS3FileSystem, set_faults
from jobs.pipeline.workers import READ_ATTEMPTS, decode_item
from object_store import new_bucket, upload


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Backoff delays, recorded instead of slept."""
    delays = []
    monkeypatch.setattr(storage.table.files.time, "sleep", delays.append)
    return delays


@pytest.fixture
def flaky_video(s3, good_videos) -> str:
    fsspec.register_implementation("flaky", FlakyS3FileSystem, clobber=True)
    return upload(good_videos["h264"], f"s3://{new_bucket()}/videos/h264.mp4").replace("s3://", "flaky://")


def decode(uri: str, tiny_model, file_stat: str | None = "seen") -> list[dict]:
    item = {"_row": 0, "video_id": "v", "uri": uri, "file_stat": file_stat}
    return decode_item(item, dataclasses.asdict(tiny_model.sampling), tiny_model.image_size, tiny_model.num_frames,
                       None)


def test_a_transient_read_error_is_retried_with_growing_backoff(flaky_video, tiny_model, sleeps):
    set_faults(flaky_video, 2)
    [row] = decode(flaky_video, tiny_model)
    assert row["status"] == "ok" and row["error"] is None and row["sampled_frames"] > 0
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 2 / 3  # 1 s then 2 s, each jittered by +-50%


def test_a_read_error_that_outlasts_the_retries_is_a_transient_error_row(flaky_video, tiny_model, sleeps):
    set_faults(flaky_video, READ_ATTEMPTS)
    [row] = decode(flaky_video, tiny_model)
    assert (row["status"], row["error_kind"], len(sleeps)) == ("error", "transient", READ_ATTEMPTS - 1)
    assert "reduce your request rate" in row["error"] and row["error"].endswith(f"(after {READ_ATTEMPTS} attempts)")
    assert "\n" not in row["error"] and row["frames"].shape[0] == tiny_model.num_frames


def test_a_bad_video_is_a_permanent_error_row_at_once(bad_files, tiny_model, sleeps):
    [row] = decode(str(bad_files["garbage"]), tiny_model)
    assert (row["status"], row["error_kind"], sleeps) == ("error", "permanent", [])


def test_any_other_exception_is_an_error_row_naming_it(good_videos, tiny_model, sleeps, monkeypatch):
    def failing(*args, **kwargs):
        raise MemoryError("cannot allocate 3 GB for frames")

    monkeypatch.setattr(jobs.pipeline.workers, "decode_video", failing)
    [row] = decode(str(good_videos["h264"]), tiny_model)
    assert (row["status"], row["error_kind"], sleeps) == ("error", "permanent", [])
    assert row["error"] == "MemoryError: cannot allocate 3 GB for frames"

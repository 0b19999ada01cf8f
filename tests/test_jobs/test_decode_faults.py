"""decode_item never fails its task: transient read errors are retried with backoff, anything
else becomes the video's error row with a one-line reason and its kind."""

from __future__ import annotations

import dataclasses
import errno

import aiohttp
import botocore.exceptions
import fsspec
import pytest
from s3fs.errors import translate_boto_error

import jobs.pipeline.workers
import storage.table.files
from encoders.video import VideoDecodeError
from flaky_s3 import FlakyS3FileSystem, set_faults
from jobs.pipeline.workers import READ_ATTEMPTS, decode_item
from object_store import new_bucket, upload
from storage.table.files import is_transient


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


def _client_error(code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")


@pytest.mark.parametrize("error, transient", [
    (translate_boto_error(_client_error("SlowDown")), True),  # as s3fs raises them
    (translate_boto_error(_client_error("InternalError")), True),
    (translate_boto_error(_client_error("RequestTimeout")), True),
    (translate_boto_error(_client_error("AccessDenied")), False),
    (translate_boto_error(_client_error("InvalidRange")), False),
    (_client_error("Throttling"), True),  # untranslated
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://s3"), True),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3"), True),
    (aiohttp.ClientPayloadError("Response payload is not completed"), True),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), True),
    (TimeoutError(), True),
    (PermissionError(errno.EACCES, "denied"), False),
    (ValueError("bad"), False),
])
def test_which_errors_are_transient(error, transient):
    assert is_transient(error) is transient
    try:  # as local_copy reports a read error: VideoDecodeError from the original
        raise VideoDecodeError("cannot read s3://b/v.mp4") from error
    except VideoDecodeError as wrapped:
        assert is_transient(wrapped) is transient


def test_a_file_the_plan_saw_but_a_read_does_not_find_is_transient():
    assert is_transient(FileNotFoundError("gone"), seen=True)
    assert not is_transient(FileNotFoundError("gone"), seen=False)

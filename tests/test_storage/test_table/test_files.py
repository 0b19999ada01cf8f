"""Which read errors are transient (retried: by the decode step at once, by the next run always)
and which are the file's own (permanent)."""

from __future__ import annotations

import errno

import aiohttp
import botocore.exceptions
import pytest
from s3fs.errors import translate_boto_error

from encoders.video import VideoDecodeError
from storage.table.files import is_transient


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

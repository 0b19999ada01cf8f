"""An S3-compatible server for tests (moto's server mode) and the standard AWS variables that
point clients at it: nothing vidx-specific, so the same commands run against real S3."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import fsspec

from servers import free_port, wait_for_port

MOTO_SERVER = str(Path(sys.executable).parent / "moto_server")


def start_moto_server(log: Path) -> tuple[subprocess.Popen, str]:
    """`moto_server` on a free 127.0.0.1 port; returns (process, endpoint). The caller stops it."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen([MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT)
    wait_for_port(port, process, log)
    return process, f"http://127.0.0.1:{port}"


def aws_environment(endpoint: str) -> dict[str, str]:
    """What boto3, s3fs and pyarrow read to find a store and sign requests (any keys do for moto)."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}


def new_bucket() -> str:
    """A fresh bucket on the server the environment names; returns its name."""
    name = f"vidx-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(name)
    return name


def upload(local: Path, url: str) -> str:
    fsspec.filesystem("s3").put_file(str(local), url)
    return url

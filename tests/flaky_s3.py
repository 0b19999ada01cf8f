"""`flaky://bucket/key`: S3 (s3fs) whose reads of an object fail while its `<key>.faults` object
says so. Registered as an fsspec implementation through an entry point (see `install`), so every
process started with its directory on PYTHONPATH (Ray nodes, their workers, jobs) has it.

A test writes `<key>.faults` holding N: the next N opens of `key` for reading raise what s3fs
raises for S3's throttling reply (OSError EBUSY "SlowDown"), one per open, across processes.
"""

from __future__ import annotations

import errno
from pathlib import Path

from s3fs import S3FileSystem


class FlakyS3FileSystem(S3FileSystem):
    protocol = ("flaky",)

    def _open(self, path, mode="rb", **kwargs):
        if "r" in mode:
            self._fail_if_told(self._strip_protocol(path))
        return super()._open(path, mode, **kwargs)

    def _fail_if_told(self, path: str) -> None:
        control = f"{path}.faults"
        try:
            remaining = int(self.cat_file(control))
        except FileNotFoundError:
            return
        if remaining > 0:
            self.pipe_file(control, str(remaining - 1).encode())
            raise OSError(errno.EBUSY, "Please reduce your request rate. (SlowDown, injected by the test)")


def set_faults(url: str, n: int) -> None:
    """The next `n` reads of the object at flaky:// or s3:// `url` fail."""
    S3FileSystem().pipe_file(f"{url.split('://', 1)[1]}.faults", str(n).encode())


def install(directory: Path) -> Path:
    """A dist-info whose entry point registers `flaky` with fsspec; put `directory` and this file's
    directory on PYTHONPATH."""
    info = directory / "flaky_s3-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flaky-s3\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[fsspec.specs]\nflaky = flaky_s3:FlakyS3FileSystem\n")
    return directory

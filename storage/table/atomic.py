"""Atomic publication: a file appears whole under its name, or not at all.

Locally: written under a temporary dot-name in the same directory, then renamed (a rename within
a file system is atomic). Object stores have no rename, but make an object visible only when its
upload completes: one PUT (or a multipart upload, completed last) of the finished bytes.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

# Readers (pyarrow, DuckDB, Spark) skip names starting with "." or "_": a temporary file is never read.
TEMP_PREFIX = ".tmp-"


def temporary_path(path: str | Path) -> str:
    """A name beside `path` that no reader sees and no other writer takes, with its extension."""
    directory, name = os.path.split(str(path))
    return os.path.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex}{os.path.splitext(name)[1]}")


def publish(fs, path: str, data: bytes | Path) -> None:
    """Make `data` (bytes, or a local file to copy) visible at `path` on `fs`, whole or not at all.

    Writing through a file object instead would publish a partial object when an exception
    (Ctrl-C) closes it half way.
    """
    if not isinstance(fs, LocalFileSystem):
        if isinstance(data, Path):
            fs.put_file(str(data), path)
        else:
            fs.pipe_file(path, data)
        return
    temporary = temporary_path(path)
    try:
        if isinstance(data, Path):
            shutil.copyfile(data, temporary)
        else:
            with open(temporary, "wb") as f:
                f.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def publish_in(directory: str, name: str, data: bytes | Path) -> str:
    """Publish `data` as `name` in `directory` (a path or fsspec URL), made if missing; returns the
    file's path, as a URL on object stores."""
    fs, root = fsspec.core.url_to_fs(directory)
    fs.makedirs(root, exist_ok=True)
    path = f"{root.rstrip('/')}/{name}"
    publish(fs, path, data)
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def publish_table(directory: str, name: str, table: pa.Table) -> str:
    """Publish `table` as the Parquet file `name` in `directory` (publish_in)."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return publish_in(directory, name, buffer.getvalue().to_pybytes())


def read_published_table(path: str) -> pa.Table | None:
    """The Parquet file at `path` (a path or fsspec URL) that publish_table wrote; None when there is none."""
    fs, local = fsspec.core.url_to_fs(path)
    if not fs.exists(local):
        return None
    with fs.open(local, "rb") as f:
        return pq.read_table(f)

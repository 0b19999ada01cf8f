"""Source files: change stamps (size, mtime or ETag), content fingerprints, and which read errors
deserve another attempt.

Stamps for a whole manifest come from directory listings: one LIST request returns size, ETag and
mtime for up to 1,000 objects, where a HEAD per video costs a round trip each (for 10^6 videos,
hours before any work starts: docs/benchmarks.md, "Planning"). Local directories are read with
os.scandir.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import random
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fsspec.implementations.local import LocalFileSystem

from errors import causes, one_line
from storage.progress import Progress

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
# Reads of one file when they fail for a transient reason (is_transient): about 1 + 2 + 4 s of
# backoff in all, longer than a throttling burst or a store's brief unavailability.
READ_ATTEMPTS = 4
# Listings in flight at once. A few hide the store's round trips; more gain nothing, since parsing
# the replies in botocore holds this process's GIL, and a slow store (moto here) only queues them
# until they time out (docs/benchmarks.md, "Why the constants are what they are").
LISTING_THREADS = 4
# errno values of failures that a later attempt may not meet: s3fs raises OSError(EBUSY) for
# SlowDown/503 and OSError(EREMOTEIO) for 500 InternalError; the rest are network conditions.
TRANSIENT_ERRNOS = {
    errno.EBUSY, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED, errno.ECONNREFUSED,
    errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EREMOTEIO,
}
# Error codes of S3-compatible stores that mean "try again" when a client passes them through raw.
TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable",
                   "InternalError", "500", "503"}

T = TypeVar("T")


def local_path(uri: str) -> str | None:
    """The path of a file on this machine's file systems (a path or file:// URL); None for any
    other URL (s3://, http://...). fsspec's registry says which protocols are local."""
    protocol, path = fsspec.core.split_protocol(uri)
    try:
        local = issubclass(fsspec.get_filesystem_class(protocol or "file"), LocalFileSystem)
    except (ValueError, ImportError):  # a protocol fsspec does not know, or whose package is missing
        return None
    return path if local else None


def is_local(uri: str) -> bool:
    return local_path(uri) is not None


def _local_stamp(st: os.stat_result) -> str | None:
    """Size, mtime, ctime and inode. ctime moves on every write and no tool can set it back
    (unlike mtime, which `cp -p` or `touch -d` can), so new bytes under an old mtime still show."""
    if not stat.S_ISREG(st.st_mode):
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def _store_stamp(info: dict) -> str | None:
    """Object stores: size and ETag (or what the store offers instead)."""
    if info.get("type") != "file":
        return None
    stamp = info.get("mtime") or info.get("ETag") or info.get("LastModified") or info.get("created") or ""
    return f"{info.get('size')}:{stamp}"


def file_stat(uri: str) -> str | None:
    """One file's stamp (one request on object stores); None when it is not a readable file.
    An unchanged stamp lets re-runs skip reading the file."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if isinstance(fs, LocalFileSystem):
            return _local_stamp(os.stat(path))
        return _store_stamp(fs.info(path))
    except (OSError, ValueError):
        return None


def _local_listing(directory: str, wanted: set[str]) -> dict[str, str | None]:
    stamps = {}
    with os.scandir(directory or ".") as entries:
        for entry in entries:
            if entry.name in wanted:
                try:
                    stamps[entry.name] = _local_stamp(entry.stat())  # follows links, as open() will
                except OSError:  # a dangling link
                    stamps[entry.name] = None
    return stamps


def _store_listing(protocol: str, directory: str, wanted: set[str]) -> dict[str, str | None]:
    fs = fsspec.filesystem(protocol)
    try:
        entries = fs.ls(directory, detail=True)
    finally:
        fs.invalidate_cache(directory)  # fsspec would keep every entry of every listing in memory
    named = ((e["name"].rstrip("/").rsplit("/", 1)[-1], e) for e in entries)
    return {name: _store_stamp(e) for name, e in named if name in wanted}


def _listed_stamps(directory: str, names: list[str]) -> dict[str, str | None]:
    """Stamps of the files `names` in `directory` (a path or URL) from one listing; {} when it
    cannot be listed."""
    path, wanted = local_path(directory), set(names)
    try:
        if path is not None:
            return retry_transient(lambda: _local_listing(path, wanted))
        return retry_transient(lambda: _store_listing(fsspec.core.split_protocol(directory)[0], directory, wanted))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as e:  # no permission to list (no s3:ListBucket), a store without listings...
        logger.warning("cannot list %s (%s): its %d files are looked up one by one", directory, one_line(e),
                       len(names))
        return {}


def list_stamps(uris: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The stamp of every uri (null: not a readable file), from one listing per directory, a few
    listings at a time. A directory's listing costs ceil(files in it / 1000) requests. A file its
    listing lacks (missing, or a store that cannot list) is looked up on its own. Columnar: the
    driver holds Arrow arrays, and Python objects for one directory at a time."""
    uris = uris.combine_chunks() if isinstance(uris, pa.ChunkedArray) else uris
    files = pa.table({"directory": pc.replace_substring_regex(uris, "[^/]*$", ""),
                      "name": pc.extract_regex(uris, "(?P<name>[^/]*)$").field("name"),
                      "row": pa.array(np.arange(len(uris)))})
    directories = files.group_by("directory", use_threads=False).aggregate([("name", "list"), ("row", "list")])
    progress = Progress(logger, "plan: stamps of", len(uris), "videos")
    looked_up = 0

    def stamp(i: int) -> tuple[pa.Array, pa.Array, int]:
        names, rows = directories["name_list"][i].as_py(), directories["row_list"][i].values
        found = _listed_stamps(directories["directory"][i].as_py(), names)
        alone = [n for n, name in enumerate(names) if name not in found]
        for n in alone:
            found[names[n]] = file_stat(uris[rows[n].as_py()].as_py())
        return rows, pa.array([found[name] for name in names], pa.string()), len(alone)

    all_rows, all_stamps = [], []
    with ThreadPoolExecutor(LISTING_THREADS) as pool:
        for n, (rows, stamps, alone) in enumerate(pool.map(stamp, range(directories.num_rows)), 1):
            all_rows.append(rows)
            all_stamps.append(stamps)
            looked_up += alone
            progress.advance(len(rows), f"from {n}/{directories.num_rows} directory listings, {looked_up} looked up alone")
    if not all_rows:
        return pa.array([], pa.string())
    return pa.concat_arrays(all_stamps).take(pc.sort_indices(pa.concat_arrays(all_rows)))


def content_fingerprint(path: str) -> str:
    """blake2b of the whole file: the identity of what was encoded."""
    digest = hashlib.blake2b(digest_size=16)
    with fsspec.open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def _client_connection_errors() -> tuple[type, ...]:
    """Connection-level errors of the S3 client stack (botocore, aiohttp), imported when first
    needed: they surface untranslated through s3fs."""
    found: list[type] = []
    try:
        from botocore.exceptions import ConnectionError as BotocoreConnectionError, HTTPClientError

        found += [BotocoreConnectionError, HTTPClientError]
    except ImportError:
        pass
    try:
        from aiohttp import ClientConnectionError, ClientPayloadError

        found += [ClientConnectionError, ClientPayloadError]
    except ImportError:
        pass
    return tuple(found)


def is_transient(error: BaseException, seen: bool = False) -> bool:
    """Whether another attempt may succeed: timeouts, throttling, dropped or refused connections,
    server errors; and a file not found that the plan did see (`seen`): a store that has not
    caught up, or a move in progress. Corrupt files, permissions, bad requests are permanent."""
    for cause in causes(error):  # VideoDecodeError wraps the read error that made it
        if isinstance(cause, FileNotFoundError):
            return seen
        if isinstance(cause, (TimeoutError, ConnectionError, *_client_connection_errors())):
            return True
        if isinstance(cause, OSError) and cause.errno in TRANSIENT_ERRNOS:
            return True
        if getattr(cause, "response", None) and cause.response.get("Error", {}).get("Code") in TRANSIENT_CODES:
            return True
    return False


def retry_transient(call: Callable[[], T], attempts: int = READ_ATTEMPTS, seen: bool = False,
                    base_delay_s: float = 1.0) -> T:
    """call(), again after about 1, 2, 4 ... s (jittered, so tasks throttled together do not return
    together) while it fails with a transient error; the last error propagates."""
    attempt = 1
    while True:
        try:
            return call()
        except Exception as e:
            if attempt >= attempts or not is_transient(e, seen):
                raise
            delay = base_delay_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            logger.warning("%s; attempt %d of %d in %.1f s", one_line(e), attempt + 1, attempts, delay)
            time.sleep(delay)
            attempt += 1

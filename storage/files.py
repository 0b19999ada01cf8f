"""Source files: change stamps (size, mtime or ETag), content fingerprints, and which read errors
deserve another attempt.

Stamps for a whole manifest come from directory listings: one LIST request returns size, ETag and
mtime for up to 1,000 objects, where a HEAD per video costs a round trip each (10^6 videos at
~20 ms would be hours before any work starts). Local directories are read with os.scandir.
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
LOCAL_PROTOCOLS = (None, "file", "local")
# Listings in flight at once: each waits on the store's round trips, not on this process's CPU.
LISTING_THREADS = 8
# Seconds between progress lines while stamping a large manifest.
PROGRESS_SECONDS = 10.0
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


def is_local(uri: str) -> bool:
    return fsspec.core.split_protocol(uri)[0] in LOCAL_PROTOCOLS


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


def _locate(uri: str) -> tuple[str | None, str, str]:
    """(protocol, directory, path as that directory's listing names it). url_to_fs costs ~0.3 ms
    a call, too much for 10^6 uris; the protocol's filesystem strips the path for ~7 us."""
    protocol, path = fsspec.core.split_protocol(uri)
    if protocol in LOCAL_PROTOCOLS:
        path = os.path.abspath(path)
        return None, os.path.dirname(path), path
    path = fsspec.get_filesystem_class(protocol)._strip_protocol(uri)
    return protocol, path.rsplit("/", 1)[0], path


def _local_listing(directory: str, wanted: set[str]) -> dict[str, str | None]:
    stamps = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.path in wanted:
                try:
                    stamps[entry.path] = _local_stamp(entry.stat())  # follows links, as open() will
                except OSError:  # a dangling link
                    stamps[entry.path] = None
    return stamps


def _store_listing(protocol: str, directory: str, wanted: set[str]) -> dict[str, str | None]:
    fs = fsspec.filesystem(protocol)
    try:
        entries = fs.ls(directory, detail=True)
    finally:
        fs.invalidate_cache(directory)  # fsspec would keep every entry of every listing in memory
    return {e["name"]: _store_stamp(e) for e in entries if e["name"] in wanted}


def _listed_stamps(protocol: str | None, directory: str, paths: list[str]) -> dict[str, str | None]:
    """Stamps of `paths` (all in `directory`) from one listing; {} when it cannot be listed."""
    wanted = set(paths)
    try:
        if protocol is None:
            return retry_transient(lambda: _local_listing(directory, wanted))
        return retry_transient(lambda: _store_listing(protocol, directory, wanted))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as e:  # no permission to list (no s3:ListBucket), a store without listings...
        logger.warning("cannot list %s (%s): its %d files are looked up one by one", directory, describe(e),
                       len(paths))
        return {}


def list_stamps(uris: Sequence[str]) -> list[str | None]:
    """The stamp of every uri (None: not a readable file), from one listing per directory, the
    listings run concurrently. A directory's listing costs ceil(files in it / 1000) requests. A file
    its listing lacks (missing, or a store that cannot list) is looked up on its own."""
    by_directory: dict[tuple[str | None, str], list[int]] = {}
    paths = []
    for i, uri in enumerate(uris):
        protocol, directory, path = _locate(uri)
        paths.append(path)
        by_directory.setdefault((protocol, directory), []).append(i)
    stamps: list[str | None] = [None] * len(uris)
    started = last_report = time.monotonic()
    done = looked_up = 0

    def listed(item):
        (protocol, directory), rows = item
        return rows, _listed_stamps(protocol, directory, [paths[i] for i in rows])

    with ThreadPoolExecutor(LISTING_THREADS) as pool:
        for n, (rows, found) in enumerate(pool.map(listed, by_directory.items()), 1):
            for i in rows:
                if paths[i] in found:
                    stamps[i] = found[paths[i]]
                else:
                    stamps[i], looked_up = file_stat(uris[i]), looked_up + 1
            done += len(rows)
            if time.monotonic() - last_report >= PROGRESS_SECONDS or n == len(by_directory):
                last_report = time.monotonic()
                logger.info("plan: stamps of %d/%d videos from %d/%d directory listings, %d looked up alone "
                            "(%.0f videos/s)", done, len(uris), n, len(by_directory), looked_up,
                            done / max(last_report - started, 1e-9))
    return stamps


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


def _causes(error: BaseException):
    """The error and what caused it (VideoDecodeError wraps the read error that made it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def is_transient(error: BaseException, seen: bool = False) -> bool:
    """Whether another attempt may succeed: timeouts, throttling, dropped or refused connections,
    server errors; and a file not found that the plan did see (`seen`): a store that has not
    caught up, or a move in progress. Corrupt files, permissions, bad requests are permanent."""
    for cause in _causes(error):
        if isinstance(cause, FileNotFoundError):
            return seen
        if isinstance(cause, (TimeoutError, ConnectionError, *_client_connection_errors())):
            return True
        if isinstance(cause, OSError) and cause.errno in TRANSIENT_ERRNOS:
            return True
        if getattr(cause, "response", None) and cause.response.get("Error", {}).get("Code") in TRANSIENT_CODES:
            return True
    return False


def describe(error: BaseException) -> str:
    """One line: the exception's type and message."""
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}".rstrip(": ")


def retry_transient(call: Callable[[], T], attempts: int = 4, seen: bool = False, base_delay_s: float = 1.0) -> T:
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
            logger.warning("%s; attempt %d of %d in %.1f s", describe(e), attempt + 1, attempts, delay)
            time.sleep(delay)
            attempt += 1

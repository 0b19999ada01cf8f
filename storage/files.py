"""Source files: a cheap change stamp (size, mtime or ETag) and a content fingerprint."""

from __future__ import annotations

import hashlib
import os
import stat

import fsspec
from fsspec.implementations.local import LocalFileSystem

CHUNK = 1 << 20


def file_stat(uri: str) -> str | None:
    """A stamp that changes whenever the file's content does; None when unreadable.

    Local files: size, mtime, ctime and inode. ctime moves on every write and no tool can set it
    back (unlike mtime, which `cp -p` or `touch -d` can), so new bytes under an old mtime still
    show. Object stores: size and ETag. An unchanged stamp lets re-runs skip reading the file.
    """
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if isinstance(fs, LocalFileSystem):
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                return None
            return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
        info = fs.info(path)
    except (OSError, ValueError):
        return None
    if info.get("type") != "file":
        return None
    stamp = info.get("mtime") or info.get("ETag") or info.get("LastModified") or info.get("created") or ""
    return f"{info.get('size')}:{stamp}"


def content_fingerprint(path: str) -> str:
    """blake2b of the whole file: the identity of what was encoded."""
    digest = hashlib.blake2b(digest_size=16)
    with fsspec.open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

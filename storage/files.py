"""Source files: a cheap change stamp (size, mtime or ETag) and a content fingerprint."""

from __future__ import annotations

import hashlib

import fsspec

CHUNK = 1 << 20


def file_stat(uri: str) -> str | None:
    """Size and modification stamp as the filesystem reports them; None when unreadable.

    Like make and rsync, an unchanged stamp is taken to mean unchanged content, so re-runs need
    not read every file again.
    """
    try:
        fs, path = fsspec.core.url_to_fs(uri)
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

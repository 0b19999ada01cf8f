"""The search page and what it shows: thumbnails at a segment's start and the library's videos.

Only videos the served collection holds are opened: a thumbnail is named by a segment's key,
a video by its video_id, and both are looked up in the collection.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fsspec.implementations.local import LocalFileSystem

from errors import NotFound
from storage.milvus.store import is_server
from storage.query.engine import Engine
from storage.table.atomic import publish
from storage.table.files import local_path

from .api import error_responses


STATIC = Path(__file__).parent / "static"
# Thumbnails change only with the file (its content fingerprint): browsers may keep them a day.
THUMBNAIL_HEADERS = {"Cache-Control": "private, max-age=86400"}


def default_cache_dir(db: str) -> Path:
    """Beside a milvus-lite database (DB.thumbnails); for a Milvus server, the user's cache."""
    if is_server(db):
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vidx" / "thumbnails"
    return Path(f"{db.rstrip('/')}.thumbnails")


class ThumbnailCache:
    """JPEG frames of served segments, made on first request and kept in `directory`. Named by the
    file's content fingerprint and the moment, so a changed file gets new ones and a cache can be
    shared by several databases."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def __call__(self, segment: dict) -> Path:
        from encoders.thumbnails import THUMBNAIL_SIDE, thumbnail_jpeg

        identity = [segment.get("content_fingerprint") or segment["uri"], segment["start_s"] or 0.0, THUMBNAIL_SIDE]
        path = self.directory / f"{hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]}.jpg"
        if not path.exists():
            jpeg = thumbnail_jpeg(segment["uri"], segment["start_s"] or 0.0)
            self.directory.mkdir(parents=True, exist_ok=True)
            publish(LocalFileSystem(), str(path), jpeg)  # a concurrent request sees the whole file or none
        return path


def _one_row(engine: Engine, collection: str, column: str, value: str, fields: list[str]) -> dict:
    rows = engine.rows_with(collection, {column: value}, fields)
    if not rows:
        raise NotFound(f"{column} {value!r}: not in the served library")
    return rows[0]


def media_router(engine: Engine, collection: str, thumbnails: ThumbnailCache, auth) -> APIRouter:
    """The page, and the thumbnails and files of the videos of alias `collection`."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @router.get("/thumbnails/{key:path}", dependencies=[auth], response_class=FileResponse,
                responses={200: {"content": {"image/jpeg": {}}}, **error_responses(400, 401, 404, 503)})
    def thumbnail(key: str) -> FileResponse:
        """The frame at the start of segment `key` (video_id#segment), as a JPEG."""
        segment = _one_row(engine, collection, "key", key, ["uri", "start_s", "content_fingerprint"])
        return FileResponse(thumbnails(segment), media_type="image/jpeg", headers=THUMBNAIL_HEADERS)

    @router.get("/videos/{video_id:path}", dependencies=[auth], response_class=FileResponse,
                responses={206: {"description": "Part of the file, answering a Range request"},
                           **error_responses(400, 401, 404, 503)})
    def video(video_id: str) -> FileResponse:
        """The video file, streamed with HTTP range requests (206 Partial Content)."""
        uri = _one_row(engine, collection, "video_id", video_id, ["uri"])["uri"]
        path = local_path(uri)
        if path is None:
            raise NotFound(f"video {video_id!r} is stored at {uri}: the server streams local files only")
        if not os.path.isfile(path):
            raise NotFound(f"video {video_id!r}: its file {path} is gone")
        return FileResponse(path)

    return router

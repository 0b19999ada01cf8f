"""The serve command: a search page at / and an HTTP JSON API (FastAPI) over the same search and
query as the CLI.

Usage: python -m jobs serve --db URI [--host 127.0.0.1] [--port 8000] [--token T | VIDX_TOKEN=T]
           [--cache-dir DIR] [--max-upload-mb 50]
Bound beyond localhost it requires a bearer token. Docs at /docs, schema at /openapi.json.
A user error is answered 400 (404 for what the library does not hold, 413 for a body over the
limit), a vector database that cannot be reached or fails 503, each with {"error": "<the one line
the CLI prints>"}; anything else is a bug (500, logged).
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from errors import KNOWN, UserError, http_status, one_line
from storage.schema import VIDEOS
from storage.vectorstore import VectorStore
from .server.api import api_router
from .server.inputs import BodyLimit
from .server.media import STATIC, ThumbnailCache, default_cache_dir, media_router

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# The page keeps the token in this cookie: images and videos cannot send an Authorization header.
TOKEN_COOKIE = "vidx_token"
DEFAULT_MAX_UPLOAD_MB = 50.0
# What a 503 asks a client to wait: the vector database was unreachable or failing.
RETRY_AFTER_SECONDS = 5


def _token_check(token: str | None):
    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization") or f"Bearer {request.cookies.get(TOKEN_COOKIE, '')}"
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(status_code=401, detail="a bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
    return check


async def _answer_error(_: Request, error: Exception) -> JSONResponse:
    """One of vidx's errors (errors.KNOWN) as its status and one line."""
    status = http_status(error)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse(status_code=status, content={"error": one_line(error)}, headers=headers)


def create_app(db: str, token: str | None = None, cache_dir: str | Path | None = None,
               max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20), collection: str = VIDEOS) -> FastAPI:
    """The page and API over the videos of alias `collection` in `db`, and their captions; every
    route but /, /static and /healthz needs `token` when one is given. Thumbnails are cached in
    `cache_dir` (default: see media.default_cache_dir)."""
    app = FastAPI(title="vidx", description="Text<->video search over a CLIP2Video index")
    store = VectorStore(db, create=False)  # opened once: milvus-lite lets one process own the database
    auth = Depends(_token_check(token))
    for error_type in KNOWN:  # anything else is a bug: a 500, with its traceback in the log
        app.add_exception_handler(error_type, _answer_error)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.include_router(api_router(db, store, auth, collection))
    thumbnails = ThumbnailCache(Path(cache_dir or default_cache_dir(db)))
    app.include_router(media_router(store, collection, thumbnails, auth))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def serve(db: str, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          cache_dir: str | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, collection: str = VIDEOS) -> None:
    token = token or os.environ.get("VIDX_TOKEN")
    if host not in LOCAL_HOSTS and not token:
        raise UserError(f"--host {host} exposes the API beyond this machine: give --token or set VIDX_TOKEN")
    if max_upload_mb <= 0:
        raise UserError("--max-upload-mb must be positive")
    uvicorn.run(create_app(db, token, cache_dir, int(max_upload_mb * 2**20), collection), host=host, port=port)

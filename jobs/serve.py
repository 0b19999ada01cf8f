"""The serve command: a search page at / and an HTTP JSON API (FastAPI) over the same search and
query as the CLI.

Usage: python -m jobs serve --db URI [--host 127.0.0.1] [--port 8000] [--token T | VIDX_TOKEN=T]
           [--cache-dir DIR] [--max-upload-mb 50]
Bound beyond localhost it requires a bearer token. Docs at /docs, schema at /openapi.json.
A user error is answered 400 (404 for what the library does not hold, 413 for a body over the
limit) with {"error": "<the one line the CLI prints>"}; anything else is a bug (500, logged).
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from encoders.video import VideoDecodeError
from storage.vectorstore import VectorStore, VectorStoreError

from .errors import UserError, one_line, user_error_status
from .server.api import api_router
from .server.inputs import BodyLimit
from .server.media import STATIC, ThumbnailCache, default_cache_dir, media_router

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# The page keeps the token in this cookie: images and videos cannot send an Authorization header.
TOKEN_COOKIE = "vidx_token"
DEFAULT_MAX_UPLOAD_MB = 50.0


def _token_check(token: str | None):
    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization") or f"Bearer {request.cookies.get(TOKEN_COOKIE, '')}"
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(status_code=401, detail="a bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
    return check


async def _answer_user_error(_: Request, error: Exception) -> JSONResponse:
    status = user_error_status(error)
    if status is None:
        raise error  # a bug: a 500, with its traceback in the server's log
    return JSONResponse(status_code=status, content={"error": one_line(error)})


def create_app(db: str, token: str | None = None, cache_dir: str | Path | None = None,
               max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20)) -> FastAPI:
    """The page and API over `db`; every route but /, /static and /healthz needs `token` when one
    is given. Thumbnails are cached in `cache_dir` (default: see media.default_cache_dir)."""
    app = FastAPI(title="vidx", description="Text<->video search over a CLIP2Video index")
    store = VectorStore(db)  # opened once: milvus-lite lets one process own the database
    auth = Depends(_token_check(token))
    for error_type in (ValueError, VectorStoreError, VideoDecodeError):  # the bases of every user error
        app.add_exception_handler(error_type, _answer_user_error)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.include_router(api_router(db, store, auth))
    app.include_router(media_router(store, ThumbnailCache(Path(cache_dir or default_cache_dir(db))), auth))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def serve(db: str, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          cache_dir: str | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> None:
    token = token or os.environ.get("VIDX_TOKEN")
    if host not in LOCAL_HOSTS and not token:
        raise UserError(f"--host {host} exposes the API beyond this machine: give --token or set VIDX_TOKEN")
    if max_upload_mb <= 0:
        raise UserError("--max-upload-mb must be positive")
    uvicorn.run(create_app(db, token, cache_dir, int(max_upload_mb * 2**20)), host=host, port=port)

"""The app of `vidx serve`: the search page and an HTTP JSON API (FastAPI) over the same query engine
as the CLI, behind a token beyond localhost, with admission control, metrics and readiness.

A user error is answered 400 (404 for what the library does not hold, 413 for a body over the
limit), a vector database that cannot be reached or fails 503, a server past --max-in-flight
searches and queries and --max-queue waiting 503, each with {"error": "<the one line the CLI
prints>"} (a 503 with Retry-After); anything else is a bug (500, logged). Docs at /docs and the
schema at /openapi.json (behind the token too), Prometheus metrics at /metrics, readiness at /healthz.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from encoders.recorded import RecordedModels
from errors import KNOWN, Unavailable, http_status, one_line
from storage.milvus.errors import VectorStoreError
from storage.milvus.store import VectorStore
from storage.query.engine import Engine

from .admission import Admission
from .api import api_router
from .batching import BatchedEncoding, TextBatcher
from .health import Readiness, health_router
from .inputs import BodyLimit
from .media import STATIC, ThumbnailCache, default_cache_dir, media_router
from .metrics import RequestMetrics, ServerMetrics
from .options import AppOptions

# The page keeps the token in this cookie: images and videos cannot send an Authorization header.
TOKEN_COOKIE = "vidx_token"
# What a 503 asks a client to wait: the vector database was unreachable or failing (a full server
# asks less: admission.py).
RETRY_AFTER_SECONDS = 5
# The routes admission control bounds (admission.py): those that encode and search.
ADMITTED_PATHS = {"/search", "/query"}


def _token_check(token: str | None):
    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization") or f"Bearer {request.cookies.get(TOKEN_COOKIE, '')}"
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(status_code=401, detail="a bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
    return check


def _error_answer(metrics: ServerMetrics):
    async def answer(_: Request, error: Exception) -> JSONResponse:
        """One of vidx's errors (errors.KNOWN) as its status and one line."""
        status = http_status(error)
        if isinstance(error, (Unavailable, VectorStoreError)):
            metrics.database_errors.labels("unavailable" if status == 503 else "refused").inc()
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        return JSONResponse(status_code=status, content={"error": one_line(error)}, headers=headers)
    return answer


def documentation_router(app: FastAPI, auth) -> APIRouter:
    """/openapi.json and /docs (Swagger UI, which reads the schema with the page's token cookie)."""
    router = APIRouter(include_in_schema=False, dependencies=[auth])

    @router.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title}: API")

    return router


def create_app(db: str, encode_text: Callable[[object, str], np.ndarray] | None = None, **options) -> FastAPI:
    """The page and API over the videos of alias `collection` in `db`, and their captions; `options`:
    those of AppOptions. `encode_text`: (model, caption) -> vector for the captions of requests
    (default: a TextBatcher of this app, started and stopped with it; a Ray Serve replica brings
    its own, server/ray_serve.py)."""
    settings = AppOptions.of(**options)
    metrics = ServerMetrics()
    batcher = None
    if encode_text is None:
        batcher = TextBatcher(on_batch=metrics.encode_batch.observe)
        metrics.encode_queue.set_function(batcher.pending)
        encode_text = batcher
    # One store, one engine: milvus-lite lets one process own a database.
    store = VectorStore(db, create=False, timeout=settings.database_timeout_s)
    models = RecordedModels()
    engine = Engine(store, BatchedEncoding(models, encode_text))
    readiness = Readiness(store, models, settings.collection, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        with batcher or contextlib.nullcontext(), store:
            await run_in_threadpool(readiness.check)  # the model is made before the first request, not by it
            yield

    # The schema and its docs page are routes of their own below, behind the token like the API.
    app = FastAPI(title="vidx", description="Text<->video search over a CLIP2Video index", lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    auth = Depends(_token_check(settings.token))
    for error_type in KNOWN:  # anything else is a bug: a 500, with its traceback in the log
        app.add_exception_handler(error_type, _error_answer(metrics))
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_upload_mb * 2**20))
    app.add_middleware(Admission, paths=ADMITTED_PATHS, max_in_flight=settings.max_in_flight,
                       max_queue=settings.max_queue, metrics=metrics)
    app.add_middleware(RequestMetrics, metrics=metrics, early_paths=ADMITTED_PATHS)  # outermost: sees every answer
    app.include_router(documentation_router(app, auth))
    app.include_router(health_router(readiness, metrics, auth))
    app.include_router(api_router(engine, auth, settings.collection))
    thumbnails = ThumbnailCache(Path(settings.cache_dir or default_cache_dir(db)))
    app.include_router(media_router(engine, settings.collection, thumbnails, auth))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

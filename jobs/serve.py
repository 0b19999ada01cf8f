"""The serve command: a search page at / and an HTTP JSON API (FastAPI) over the same search and
query as the CLI.

Usage: python -m jobs serve --db URI [--host 127.0.0.1] [--port 8000] [--token T | VIDX_TOKEN=T]
           [--cache-dir DIR] [--max-upload-mb 50] [--max-in-flight 32] [--max-queue 32]
           [--ray [--replicas 2] [--replica-cpus 1] [--address RAY_ADDRESS]]
Bound beyond localhost it requires a bearer token. Docs at /docs and the schema at /openapi.json
(behind the token too), Prometheus metrics at /metrics, readiness at /healthz.
A user error is answered 400 (404 for what the library does not hold, 413 for a body over the
limit), a vector database that cannot be reached or fails 503, a server past --max-in-flight
searches and queries and --max-queue waiting 503, each with {"error": "<the one line the CLI prints>"} (a 503 with
Retry-After); anything else is a bug (500, logged). The captions of concurrent requests are
encoded together (server/batching.py); --ray deploys replicas on Ray Serve (server/ray_serve.py).
"""

from __future__ import annotations

import contextlib
import hmac
import os
from pathlib import Path

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from errors import KNOWN, Unavailable, UserError, http_status, one_line
from storage.schema import VIDEOS
from storage.milvus.store import VectorStore, VectorStoreError
from .search import TextEncoding
from .server.admission import Admission
from .server.api import api_router
from .server.batching import TextBatcher
from .server.health import Readiness, health_router
from .server.inputs import BodyLimit
from .server.media import STATIC, ThumbnailCache, default_cache_dir, media_router
from .server.metrics import RequestMetrics, ServerMetrics

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# The page keeps the token in this cookie: images and videos cannot send an Authorization header.
TOKEN_COOKIE = "vidx_token"
DEFAULT_MAX_UPLOAD_MB = 50.0
# What a 503 asks a client to wait: the vector database was unreachable or failing (a full server
# asks less: admission.py).
RETRY_AFTER_SECONDS = 5
# Searches and queries worked on at once: one encoder batch (batching.py). More only take turns on
# the cores: on 2 cores with ViT-B/32's text tower, 32 clients gave the most requests/s.
DEFAULT_MAX_IN_FLIGHT = 32
# Admitted requests waiting for a place: an admitted request waits about (32 + 32) / throughput.
DEFAULT_MAX_QUEUE = 32
# The routes admission control bounds (server/admission.py): those that encode and search.
ADMITTED_PATHS = {"/search", "/query"}
# A request to the vector database that gets no answer in this long fails (a 503), rather than
# holding its client and a thread for as long as the database is gone.
DATABASE_TIMEOUT_SECONDS = 10.0


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


def size_torch_threads() -> None:
    """torch's threads to the cores this process may use: more only take turns on them."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))


def create_app(db: str, token: str | None = None, cache_dir: str | Path | None = None,
               max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20), collection: str = VIDEOS,
               max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, max_queue: int = DEFAULT_MAX_QUEUE,
               texts: TextEncoding | None = None, database_timeout_s: float = DATABASE_TIMEOUT_SECONDS) -> FastAPI:
    """The page and API over the videos of alias `collection` in `db`, and their captions; every
    route but /, /static and /healthz needs `token` when one is given. Thumbnails are cached in
    `cache_dir` (default: see media.default_cache_dir). At most `max_in_flight` searches and
    queries at once, and `max_queue` waiting (503 beyond). `texts` encodes captions (default: a TextBatcher of this process). A read of
    the database that gets no answer in `database_timeout_s` fails (503)."""
    metrics = ServerMetrics()
    if texts is None:  # a Ray Serve replica brings its own (server/ray_serve.py)
        batcher = TextBatcher(on_batch=metrics.encode_batch.observe)
        metrics.encode_queue.set_function(batcher.pending)
        texts = batcher
    store = VectorStore(db, create=False, timeout=database_timeout_s)  # one: milvus-lite lets one process own it
    readiness = Readiness(store, collection, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await run_in_threadpool(readiness.check)  # the model is made before the first request, not by it
        yield

    # The schema and its docs page are routes of their own below, behind the token like the API.
    app = FastAPI(title="vidx", description="Text<->video search over a CLIP2Video index", lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    auth = Depends(_token_check(token))
    for error_type in KNOWN:  # anything else is a bug: a 500, with its traceback in the log
        app.add_exception_handler(error_type, _error_answer(metrics))
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.add_middleware(Admission, paths=ADMITTED_PATHS, max_in_flight=max_in_flight, max_queue=max_queue,
                       metrics=metrics)
    app.add_middleware(RequestMetrics, metrics=metrics, early_paths=ADMITTED_PATHS)  # outermost: sees every answer
    app.include_router(documentation_router(app, auth))
    app.include_router(health_router(readiness, metrics, auth))
    app.include_router(api_router(db, store, auth, collection, texts))
    thumbnails = ThumbnailCache(Path(cache_dir or default_cache_dir(db)))
    app.include_router(media_router(store, collection, thumbnails, auth))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def check_options(host: str, token: str | None, max_upload_mb: float, max_in_flight: int, max_queue: int) -> None:
    if host not in LOCAL_HOSTS and not token:
        raise UserError(f"--host {host} exposes the API beyond this machine: give --token or set VIDX_TOKEN")
    if max_upload_mb <= 0:
        raise UserError("--max-upload-mb must be positive")
    if max_in_flight < 1 or max_queue < 0:
        raise UserError("--max-in-flight must be at least 1 and --max-queue at least 0")


def serve(db: str, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          cache_dir: str | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, collection: str = VIDEOS,
          max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, max_queue: int = DEFAULT_MAX_QUEUE, ray: bool = False,
          replicas: int = 2,
          replica_cpus: float = 1.0, address: str | None = None) -> None:
    """Answer on host:port: one process (uvicorn), or with `ray` `replicas` processes on Ray Serve."""
    token = token or os.environ.get("VIDX_TOKEN")
    check_options(host, token, max_upload_mb, max_in_flight, max_queue)
    app_options = {"token": token, "cache_dir": cache_dir, "max_upload_bytes": int(max_upload_mb * 2**20),
                   "collection": collection, "max_in_flight": max_in_flight, "max_queue": max_queue}
    if ray:
        from .server.ray_serve import serve_on_ray

        serve_on_ray(db, host, port, app_options, replicas, replica_cpus, address)
        return
    size_torch_threads()
    uvicorn.run(create_app(db, **app_options), host=host, port=port)

"""The serve command: an HTTP JSON API (FastAPI) over the same search and query as the CLI.

Usage: python -m jobs serve --db URI [--host 127.0.0.1] [--port 8000] [--token T | VIDX_TOKEN=T]
Bound beyond localhost it requires a bearer token. Docs at /docs, schema at /openapi.json.
"""

from __future__ import annotations

import hmac
import os

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from storage.vectorstore import VectorStore, VectorStoreError

from .query import run_query
from .search import MAX_K, search

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_TEXT = 1_000  # characters of a query caption
MAX_SQL = 10_000  # characters of a statement


class SearchRequest(BaseModel):
    text: str | None = Field(None, max_length=MAX_TEXT)
    video_id: str | None = Field(None, max_length=MAX_TEXT)
    target: str = Field("videos", pattern="^(videos|captions)$")
    k: int = Field(10, ge=1, le=MAX_K)
    where: str = Field("", max_length=MAX_SQL)


class QueryRequest(BaseModel):
    sql: str = Field(..., max_length=MAX_SQL)
    params: dict[str, str | int | float] = Field(default_factory=dict)
    explain: bool = False


def _bearer_check(token: str | None):
    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(status_code=401, detail="a bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
    return check


def create_app(db: str, token: str | None = None) -> FastAPI:
    """The API over `db`; every route but /healthz needs `token` when one is given."""
    app = FastAPI(title="vidx", description="Text<->video search over a CLIP2Video index")
    store = VectorStore(db)  # opened once: milvus-lite lets one process own the database
    auth = Depends(_bearer_check(token))

    @app.exception_handler(ValueError)  # QueryError and CheckpointError are ValueErrors
    @app.exception_handler(VectorStoreError)
    async def bad_request(_, error: Exception) -> JSONResponse:
        return JSONResponse(status_code=400, content={"error": str(error)})

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "videos": store.alias_target("videos"), "captions": store.alias_target("captions")}

    @app.post("/search", dependencies=[auth])
    def search_route(body: SearchRequest) -> list[dict]:
        return search(db, text=body.text, video_id=body.video_id, target=body.target, k=body.k, where=body.where,
                      store=store)

    @app.post("/query", dependencies=[auth])
    def query_route(body: QueryRequest):
        return run_query(db, body.sql, {k: str(v) for k, v in body.params.items()}, body.explain, store=store)

    return app


def serve(db: str, host: str = "127.0.0.1", port: int = 8000, token: str | None = None) -> None:
    token = token or os.environ.get("VIDX_TOKEN")
    if host not in LOCAL_HOSTS and not token:
        raise ValueError(f"--host {host} exposes the API beyond this machine: give --token or set VIDX_TOKEN")
    uvicorn.run(create_app(db, token), host=host, port=port)


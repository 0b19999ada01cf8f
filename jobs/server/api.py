"""The JSON API: /healthz, /library, /search and /query, as the CLI answers them.

/search and /query take a JSON object, or the same fields as a multipart form with clips:
a /search form's file `clip` is the query video; in a /query form, each text field other than
`sql` and `explain` is a parameter and each file one too, so `VIDEO(:clip)` is the file `clip`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from storage.dataset import CAPTION_FIELDS, VIDEO_FIELDS
from storage.vectorstore import VectorStore

from ..query import run_query
from ..search import MAX_K, search
from .inputs import LibraryVideos, is_form, request_fields

MAX_TEXT = 1_000  # characters of a query caption, video id or uri
MAX_SQL = 10_000  # characters of a statement
# Columns every index row has; the others came from the manifest (the page shows those).
STANDARD_COLUMNS = {f.name for f in VIDEO_FIELDS + CAPTION_FIELDS} | {"key", "embedding"}


class SearchRequest(BaseModel):
    text: str | None = Field(None, max_length=MAX_TEXT)
    video: str | None = Field(None, max_length=MAX_TEXT, description="a video_id or uri of the library")
    video_id: str | None = Field(None, max_length=MAX_TEXT)
    target: str = Field("videos", pattern="^(videos|captions)$")
    k: int = Field(10, ge=1, le=MAX_K)
    where: str = Field("", max_length=MAX_SQL)
    per_video: bool = Field(False, description="one hit per video, at its best segment")


class QueryRequest(BaseModel):
    sql: str = Field(..., max_length=MAX_SQL)
    params: dict[str, str | int | float] = Field(default_factory=dict)
    explain: bool = False


def _validated(model: type[BaseModel], fields: dict) -> BaseModel:
    try:
        return model.model_validate(fields)
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None


def _body_schema(model: type[BaseModel], form: str) -> dict:
    """OpenAPI: the route reads its body itself (JSON or multipart), so say what it takes."""
    form_schema = {"type": "object", "additionalProperties": True, "description": form}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()},
                                                           "multipart/form-data": {"schema": form_schema}}}}


def _collection_summary(store: VectorStore, alias: str) -> dict | None:
    collection = store.alias_target(alias)
    if collection is None:
        return None
    return {"collection": collection, "rows": store.count(collection), "model": store.model_record(collection)["spec"],
            "metadata": sorted(store.fields(alias) - STANDARD_COLUMNS)}


def api_router(db: str, store: VectorStore, auth) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "videos": store.alias_target("videos"), "captions": store.alias_target("captions")}

    @router.get("/library", dependencies=[auth])
    def library() -> dict:
        """The served collections, their model, and the manifest's metadata columns."""
        return {alias: _collection_summary(store, alias) for alias in ("videos", "captions")}

    @router.post("/search", dependencies=[auth], openapi_extra=_body_schema(
        SearchRequest, "the JSON fields as form fields; a file `clip` is the query video"))
    async def search_route(request: Request) -> list[dict]:
        async with request_fields(request) as (fields, clips):
            if "clip" in clips:
                fields["video"] = clips["clip"]
            body = _validated(SearchRequest, fields)
            return await run_in_threadpool(
                search, db, text=body.text, video=body.video, video_id=body.video_id, target=body.target, k=body.k,
                where=body.where, store=store, videos=LibraryVideos(store, clips), per_video=body.per_video)

    @router.post("/query", dependencies=[auth], openapi_extra=_body_schema(
        QueryRequest, "`sql`, `explain`; every other field is a parameter, every file a clip: VIDEO(:name)"))
    async def query_route(request: Request):
        async with request_fields(request) as (fields, clips):
            if is_form(request):  # its other fields and its files are the parameters
                fields = {"sql": fields.pop("sql", None), "explain": fields.pop("explain", False),
                          "params": {**fields, **clips}}
            body = _validated(QueryRequest, fields)
            params = {name: str(value) for name, value in body.params.items()}
            return await run_in_threadpool(run_query, db, body.sql, params, body.explain, store=store,
                                           videos=LibraryVideos(store, clips))

    return router

"""The JSON API: /library, /search and /query, as the CLI answers them.

/search and /query take a JSON object, or the same fields as a multipart form with clips:
a /search form's file `clip` is the query video; in a /query form, each text field other than
`sql` and `explain` is a parameter and each file one too, so `VIDEO(:clip)` is the file `clip`.

FastAPI cannot take both bodies on one route: it reads a route's body as a form when any of its
parameters is a Form or File, else as JSON (`is_body_form` in fastapi/routing.py), and documents
that one media type. Its body parameters would also change these answers: it reads (and spools)
the body before the token is checked; a body over --max-upload-mb sent without a Content-Length
becomes its 400 "There was an error parsing the body", not the 413; a body that is not a JSON
object is a 422, not a 400; JSON sent without a JSON Content-Type is not read. So a dependency,
run after the token, reads the body by its Content-Type and validates it with the models below (a
422 as FastAPI's own), and each route documents both media types with the schemas FastAPI makes
of those models, through `openapi_extra` (FastAPI's way to document a body a route reads itself).
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile as StarletteUpload

from errors import Unavailable
from storage.query.engine import Engine
from storage.query.questions import Search, Statement
from storage.schema import CAPTIONS, CORPORA_KEY, MAX_SQL, STANDARD_COLUMNS, VIDEOS, caption_alias, corpus_alias

from .inputs import LibraryVideos, form_fields, is_form, json_object
# The longest a search or query may take: past the database's own timeout (serve.py), a bound on
# what no client call bounds (a scan's iterator waits on a silent server).
REQUEST_SECONDS = 30.0
M = TypeVar("M", bound=BaseModel)


class SearchForm(Search):
    """/search as a multipart form: the same fields, and the query video as an uploaded file."""

    clip: UploadFile | None = Field(None, description="the query video, uploaded (instead of `video`)")


class QueryForm(BaseModel):
    """/query as a multipart form: every field other than `sql` and `explain` is a parameter, and
    every file a clip: VIDEO(:name)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str | UploadFile] = Field(init=False)
    sql: str = Field(..., max_length=MAX_SQL)
    explain: bool = False


class QueryPlan(BaseModel):
    """/query's answer with `explain`: the plan, and the steps the statement becomes."""

    plan: str
    steps: list[dict[str, Any]]


class ErrorAnswer(BaseModel):
    """Why a request failed, on one line (what the CLI prints)."""

    error: str


class DetailAnswer(BaseModel):
    """FastAPI's answer to an HTTPException: a missing or wrong token (401), a multipart form that
    cannot be parsed (400: too many files or fields, a malformed body), a path no route matches (404)."""

    detail: str


# The error answers of the routes, by status: each route declares those it gives (error_responses).
ERROR_RESPONSES: dict[int, dict] = {
    400: {"model": ErrorAnswer | DetailAnswer,
          "description": "Bad input: the reason in `error` (in `detail` for a multipart form that cannot be parsed)"},
    401: {"model": DetailAnswer, "description": "No bearer token, or a wrong one",
          "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}},
    404: {"model": ErrorAnswer | DetailAnswer,
          "description": "Names a video or segment the served library does not hold (in `detail`: a path no route "
                         "matches, as one with a line break in a path parameter)"},
    413: {"model": ErrorAnswer, "description": "A request body over the server's limit (vidx serve --max-upload-mb)"},
    # The body routes validate their bodies as FastAPI would (a RequestValidationError): its answer, and
    # its schema, which FastAPI adds to the components for the routes with parameters (media.py's).
    422: {"description": "Validation Error",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}},
    503: {"model": ErrorAnswer,
          "description": "The vector database cannot be reached or fails, or the server is busy: retry later",
          "headers": {"Retry-After": {"description": "seconds to wait", "required": True,
                                      "schema": {"type": "integer", "minimum": 0}}}},
}


def error_responses(*statuses: int) -> dict[int, dict]:
    """A route's `responses`: the error answers it gives, of ERROR_RESPONSES."""
    return {status: ERROR_RESPONSES[status] for status in statuses}


def _validated(model: type[M], fields: dict) -> M:
    try:
        return model.model_validate(fields)
    except ValidationError as e:  # the inputs, unless an uploaded file is among them: it is no JSON
        files = any(isinstance(value, StarletteUpload) for value in fields.values())
        raise RequestValidationError(e.errors(include_input=not files)) from None


def _request_body(json_model: type[BaseModel], form_model: type[BaseModel]) -> dict:
    """OpenAPI: the route's body is JSON or a multipart form, as these models validate them."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": json_model.model_json_schema()},
        "multipart/form-data": {"schema": form_model.model_json_schema()}}}}


def _body_reader(json_model: type[M], from_form):
    """A dependency: the request's body as `json_model` when it is JSON, else made from its multipart
    form by `from_form(fields, clips)`; with the paths of its uploaded clips, removed once the route
    returns."""
    async def read(request: Request) -> AsyncIterator[tuple[M, set[str]]]:
        if not is_form(request):
            yield _validated(json_model, await json_object(request)), set()
            return
        async with form_fields(request) as (fields, clips):
            yield from_form(fields, clips), clips.paths
    return read


def _search_from_form(fields: dict, clips) -> Search:
    body = _validated(SearchForm, fields)
    if body.clip is not None:
        body.video = clips.save(body.clip)
    return body


def _query_from_form(fields: dict, clips) -> Statement:
    form = _validated(QueryForm, fields)
    params = {name: value if isinstance(value, str) else clips.save(value) for name, value in form.model_extra.items()}
    return _validated(Statement, {"sql": form.sql, "params": params, "explain": form.explain})


# Each route's body, and the paths of the clips uploaded with it.
SearchBody = Annotated[tuple[Search, set[str]],
                       Depends(_body_reader(Search, _search_from_form), scope="function")]
QueryBody = Annotated[tuple[Statement, set[str]],
                      Depends(_body_reader(Statement, _query_from_form), scope="function")]


def _collection_summary(engine: Engine, alias: str) -> dict | None:
    store = engine.store
    collection = store.alias_target(alias)
    if collection is None:
        return None
    return {"collection": collection, "rows": engine.count(alias), "model": store.model_record(collection)["spec"],
            "metadata": sorted(store.fields(alias) - STANDARD_COLUMNS)}


async def answered_in_time(call, *args, **kwargs):
    """`call` in a worker thread, or Unavailable after REQUEST_SECONDS: a database that stopped
    answering fails the request within a bound even where a client call has no timeout of its own
    (the thread is freed when that call returns)."""
    try:
        with anyio.fail_after(REQUEST_SECONDS):
            return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs), abandon_on_cancel=True)
    except TimeoutError:
        raise Unavailable(f"no answer within {REQUEST_SECONDS:g} s: the vector database or the encoder is not "
                          "answering") from None


def api_router(engine: Engine, auth, collection: str) -> APIRouter:
    """The API over the videos of alias `collection` and their captions, every question answered by `engine`."""
    router = APIRouter()
    served = {VIDEOS: collection, CAPTIONS: caption_alias(collection)}

    @router.get("/library", dependencies=[auth], responses=error_responses(400, 401, 503))
    def library() -> dict:
        """The served collections, their model, the manifest's metadata columns, and the text corpora."""
        summary = {table: _collection_summary(engine, alias) for table, alias in served.items()}
        videos = engine.store.alias_target(collection)
        names = json.loads(engine.store.properties(videos).get(CORPORA_KEY, "[]")) if videos else []
        summary["corpora"] = {name: _collection_summary(engine, corpus_alias(collection, name)) for name in names}
        return summary

    # `auth` is a dependency of the route, so it runs before the body dependency reads anything.
    @router.post("/search", dependencies=[auth], openapi_extra=_request_body(Search, SearchForm),
                 responses=error_responses(400, 401, 404, 413, 422, 503))
    async def search_route(received: SearchBody) -> list[dict]:
        body, clips = received
        question = Search.model_validate(body.model_dump(include=set(Search.model_fields)))
        return await answered_in_time(engine.search, question, collection,
                                      videos=LibraryVideos(engine, clips, collection))

    @router.post("/query", dependencies=[auth], openapi_extra=_request_body(Statement, QueryForm),
                 responses={200: {"model": list[dict[str, Any]] | QueryPlan,
                                  "description": "The rows, or with `explain` the steps the statement becomes"},
                            **error_responses(400, 401, 404, 413, 422, 503)})
    async def query_route(received: QueryBody):
        body, clips = received
        params = {name: str(value) for name, value in body.params.items()}
        if body.explain:
            return await answered_in_time(engine.explain, body.sql, params)
        rows = await answered_in_time(engine.query, body.sql, params, videos=LibraryVideos(engine, clips, collection))
        return rows.to_pylist()

    return router

"""The HTTP JSON API (jobs/server/api.py): /search and /query answer as the CLI does, and bad input
is the CLI's one line, with a 400 (404 for what the library does not hold, 422 for limits); a body
is JSON or a multipart form, documented as FastAPI documents the models; behind a token (app.py),
strangers are refused before their body is read."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, Form
from fastapi.testclient import TestClient

from cli import cli_error
from jobs.query import run_query
from jobs.search import search
from jobs.server.api import QueryForm, SearchForm
from jobs.server.app import create_app
from jobs.server.inputs import MAX_CLIPS
from storage.milvus.store import VectorStore
from storage.query.questions import Search, Statement

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(loaded) -> TestClient:
    """A server that needs TOKEN."""
    _, db = loaded
    with TestClient(create_app(db, token=TOKEN)) as client:
        yield client


@pytest.fixture(scope="module")
def open_client(loaded, tmp_path_factory) -> TestClient:
    """A server that needs no token."""
    _, db = loaded
    with TestClient(create_app(db, cache_dir=tmp_path_factory.mktemp("thumbnails"))) as client:
        yield client


@pytest.fixture
def empty_server(server_db) -> str:
    """A database of its own on the session's Milvus server, holding no collection."""
    return server_db


def http_error(client: TestClient, path: str, body: dict, status: int = 400) -> str:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()["error"]



def test_search_and_query_answer_as_the_cli(client, loaded):
    _, db = loaded
    response = client.post("/search", json={"text": "a red circle", "k": 5, "where": "segment == 0"}, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == search(db, text="a red circle", k=5, where="segment == 0")
    sql = "SELECT video_id, colour FROM videos WHERE colour = :c LIMIT 3"
    response = client.post("/query", json={"sql": sql, "params": {"c": "red"}}, headers=AUTH)
    assert response.status_code == 200 and response.json() == run_query(db, sql, {"c": "red"})


def test_requests_without_the_token_are_refused(client):
    assert client.post("/search", json={"text": "x"}).status_code == 401
    assert client.post("/query", json={"sql": "SELECT * FROM videos"},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_bad_input_is_a_400_with_the_reason_or_a_422_for_limits(client):
    response = client.post("/query", json={"sql": "SELECT * FROM videos GROUP BY colour"}, headers=AUTH)
    assert response.status_code == 400 and "SELECT * cannot be grouped" in response.json()["error"]
    assert client.post("/search", json={"text": "x", "k": 100_000}, headers=AUTH).status_code == 422
    assert client.post("/search", json={"text": "x" * 5000}, headers=AUTH).status_code == 422


def test_a_body_is_json_unless_it_is_a_multipart_form(client):
    for content_type in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}):
        response = client.post("/search", content=b'{"text": "a red circle", "k": 2}', headers={**AUTH, **content_type})
        assert response.status_code == 200 and len(response.json()) == 2
    response = client.post("/search", content=b"{not json", headers=AUTH)
    assert response.status_code == 400 and response.json()["error"].startswith("the request body is not JSON (")
    response = client.post("/query", json=["SELECT * FROM videos"], headers=AUTH)
    assert response.status_code == 400 and response.json() == {"error": "the request body must be a JSON object"}
    response = client.post("/query", data={"explain": "true"}, files={"clip": ("c.mp4", b"\0", "video/mp4")},
                           headers=AUTH)
    assert response.status_code == 422 and [e["loc"] for e in response.json()["detail"]] == [["sql"]]


def test_the_token_is_checked_before_the_body_is_read(client):
    files = [(f"clip{i}", (f"{i}.mp4", b"\0", "video/mp4")) for i in range(MAX_CLIPS + 1)]
    for path in ("/search", "/query"):
        assert client.post(path, files=files).status_code == 401  # unread: too many files would be a 400
        response = client.post(path, files=files, headers=AUTH)
        assert response.status_code == 400 and "Too many files" in response.text


def fastapi_schemas() -> dict:
    """The OpenAPI schemas FastAPI makes of the request models, each the body of a route of its own kind."""
    app = FastAPI()

    @app.post("/search.json")
    def search_json(body: Search): ...

    @app.post("/search.form")
    def search_form(body: Annotated[SearchForm, Form(media_type="multipart/form-data")]): ...

    @app.post("/query.json")
    def query_json(body: Statement): ...

    @app.post("/query.form")
    def query_form(body: Annotated[QueryForm, Form(media_type="multipart/form-data")]): ...

    return TestClient(app).get("/openapi.json").json()["components"]["schemas"]


def test_openapi_documents_json_and_form_bodies_as_fastapi_does_for_the_models(client):
    """Each route takes JSON or a multipart form; each is documented with the very schema FastAPI makes for
    the model the route validates it with (FastAPI would put it under components, one media type per route)."""
    paths = client.get("/openapi.json", headers=AUTH).json()["paths"]
    expected = fastapi_schemas()
    search_fields = {"text", "video", "video_id", "target", "k", "where", "per_video"}
    for path, json_model, form_model, json_fields, form_fields in (
            ("/search", Search, SearchForm, search_fields, search_fields | {"clip"}),
            ("/query", Statement, QueryForm, {"sql", "params", "explain"}, {"sql", "explain"})):
        body = paths[path]["post"]["requestBody"]
        assert body["required"] and set(body["content"]) == {"application/json", "multipart/form-data"}
        json_schema, form_schema = (body["content"][kind]["schema"]
                                    for kind in ("application/json", "multipart/form-data"))
        assert json_schema == expected[json_model.__name__] and set(json_schema["properties"]) == json_fields
        assert form_schema == expected[form_model.__name__] and set(form_schema["properties"]) == form_fields
    upload = {"type": "string", "contentMediaType": "application/octet-stream"}  # FastAPI's UploadFile
    search_form = paths["/search"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload in search_form["properties"]["clip"]["anyOf"]
    query_form = paths["/query"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert query_form["required"] == ["sql"]
    assert query_form["additionalProperties"] == {"anyOf": [{"type": "string"}, upload]}  # parameters and clips


def test_per_video_search_shows_each_video_once_at_its_best_segment(open_client, loaded):
    _, db = loaded
    segments = search(db, text="a blue square moves up", k=1000)
    best = {}
    for hit in segments:
        best.setdefault(hit["video_id"], hit)
    hits = open_client.post("/search", json={"text": "a blue square moves up", "k": 5, "per_video": True}).json()
    assert [h["key"] for h in hits] == [h["key"] for h in list(best.values())[:5]]


# --- Bad input: the CLI's one line, the same over HTTP. Each input here was a traceback once. ---


@pytest.mark.parametrize("sql, expected", [
    ("", "empty statement: expected SELECT ... FROM videos or captions"),
    ("  -- a comment, no statement\n", "empty statement"),
    ("SELECT video_id FROM videos WHERE colour = 'red",
     "syntax error at line 1, column 44: a ' quote that is never closed: \"'red\""),
    ("SELECT video_id FROM videos\nWHERE colour = \"red", "syntax error at line 2, column 16: a \" quote"),
    ("SELECT video_id FROM videos WHERE duration_s > 1e999", "number out of range: '1e999' at line 1, column 48"),
    ("SELECT video_id FROM videos WHERE segment < -99999999999999999999",
     "number out of range: '99999999999999999999' at line 1, column 46"),
    ("SELECT video_id FROM videos; SELECT 1", "one statement at a time: 'SELECT 1' at line 1, column 30"),
])
def test_bad_statements_name_the_place(loaded, open_client, capsys, sql, expected):
    _, db = loaded
    line = cli_error(capsys, "query", "--db", db, sql)
    assert expected in line
    assert http_error(open_client, "/query", {"sql": sql}) == line


@pytest.mark.parametrize("where, keeps", [
    ("duration_s > 1e5", lambda row: False),
    ("duration_s < 1E5 AND start_s > -4 AND end_s >= 2.5E-3", lambda row: True),
    ("start_s >= 2.0e0", lambda row: row["start_s"] >= 2),
])
def test_numbers_in_every_notation_filter_as_numbers(loaded, open_client, where, keeps):
    _, db = loaded
    everything = run_query(db, "SELECT key, start_s FROM videos LIMIT 1000")
    expected = sorted(row["key"] for row in everything if keeps(row))
    got = run_query(db, f"SELECT key FROM videos WHERE {where} LIMIT 1000")
    assert sorted(row["key"] for row in got) == expected
    response = open_client.post("/query", json={"sql": f"SELECT key FROM videos WHERE {where} LIMIT 1000"})
    assert sorted(row["key"] for row in response.json()) == expected


def test_a_missing_collection_is_named_before_any_column(tmp_path, empty_server, capsys):
    sql = ("SELECT video_id, colour, score FROM videos WHERE colour = 'red' "
           "ORDER BY similarity(TEXT('a red circle')) DESC LIMIT 3")
    expected = "no such collection in the database (load one with `vidx load`): 'videos' at line 1, column 37"
    assert cli_error(capsys, "query", "--db", empty_server, sql) == expected
    embedded = str(tmp_path / "empty.db")
    VectorStore(embedded)  # a database that holds nothing (where none exists, readers say so: test_cli.py)
    assert cli_error(capsys, "query", "--db", embedded, sql) == expected
    assert http_error(TestClient(create_app(embedded, cache_dir=tmp_path)), "/query", {"sql": sql}) == expected


def test_a_video_that_does_not_exist(loaded, open_client, capsys):
    _, db = loaded
    assert cli_error(capsys, "search", "--db", db, "--video", "/nonexistent.mp4") == "no such file: /nonexistent.mp4"
    # A server opens no path it is given: the same request names no video of its library.
    line = http_error(open_client, "/search", {"video": "/nonexistent.mp4"}, 404)
    assert line.startswith("VIDEO('/nonexistent.mp4') is not a video of the served library")


def test_an_unknown_video_id_and_a_bad_filter(loaded, open_client, capsys):
    _, db = loaded
    line = cli_error(capsys, "search", "--db", db, "--video-id", "no-such-video")
    assert line == "video 'no-such-video': no such video in the collection"
    assert http_error(open_client, "/search", {"video_id": "no-such-video"}, 404) == line
    line = cli_error(capsys, "search", "--db", db, "--text", "x", "--where", "colour === 'red'")
    assert line.startswith("search failed (--where \"colour === 'red'\"):")
    assert http_error(open_client, "/search", {"text": "x", "where": "colour === 'red'"}) == line


def test_an_empty_text_is_refused(loaded, open_client, capsys):
    _, db = loaded
    expected = "the text to search for is empty"
    assert cli_error(capsys, "search", "--db", db, "--text", " ") == expected
    assert http_error(open_client, "/search", {"text": ""}) == expected
    sql = "SELECT key FROM videos ORDER BY similarity(TEXT('')) DESC"
    assert cli_error(capsys, "query", "--db", db, sql) == expected

"""The HTTP API answers as the CLI does, and refuses strangers when it needs a token."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, Form
from fastapi.testclient import TestClient

from jobs.query import run_query
from jobs.search import search
from jobs.serve import serve
from jobs.server.app import create_app
from jobs.server.api import QueryForm, SearchForm
from storage.query.questions import Search, Statement
from jobs.server.inputs import MAX_CLIPS

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(loaded) -> TestClient:
    _, db = loaded
    with TestClient(create_app(db, token=TOKEN)) as client:
        yield client


def test_healthz_names_the_served_versions(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["videos"].startswith("videos_") and body["captions"].startswith("captions_")


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


def test_binding_beyond_localhost_needs_a_token(monkeypatch, tmp_path):
    monkeypatch.delenv("VIDX_TOKEN", raising=False)
    with pytest.raises(ValueError, match="give --token or set VIDX_TOKEN"):
        serve(str(tmp_path / "vidx.db"), host="0.0.0.0")

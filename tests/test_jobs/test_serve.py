"""The HTTP API answers as the CLI does, and refuses strangers when it needs a token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from jobs.query import run_query
from jobs.search import search
from jobs.serve import create_app, serve

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(loaded) -> TestClient:
    _, db = loaded
    return TestClient(create_app(db, token=TOKEN))


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
    assert response.status_code == 400 and "GROUP BY is not supported" in response.json()["error"]
    assert client.post("/search", json={"text": "x", "k": 100_000}, headers=AUTH).status_code == 422
    assert client.post("/search", json={"text": "x" * 5000}, headers=AUTH).status_code == 422


def test_binding_beyond_localhost_needs_a_token(monkeypatch, tmp_path):
    monkeypatch.delenv("VIDX_TOKEN", raising=False)
    with pytest.raises(ValueError, match="give --token or set VIDX_TOKEN"):
        serve(str(tmp_path / "vidx.db"), host="0.0.0.0")

"""Bad input is one line: at the CLI on stderr with exit 2 and no traceback, over HTTP the same line
with a 400 (404 for what the library does not hold). Each input here was a traceback once."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from jobs.__main__ import main
from jobs.query import run_query
from jobs.server.app import create_app
from storage.milvus.store import VectorStore


@pytest.fixture(scope="module")
def client(loaded, tmp_path_factory) -> TestClient:
    _, db = loaded
    with TestClient(create_app(db, cache_dir=tmp_path_factory.mktemp("thumbnails"))) as client:
        yield client


@pytest.fixture
def empty_server(server_db) -> str:
    """A database of its own on the session's Milvus server, holding no collection."""
    return server_db


def cli_error(capsys, *argv: str) -> str:
    """The one line `vidx ARGV` prints, without its "vidx COMMAND: error: " prefix."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    prefix = f"vidx {argv[0]}: error: "
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith(prefix), err
    return err.strip()[len(prefix):]


def http_error(client: TestClient, path: str, body: dict, status: int = 400) -> str:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()["error"]


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
def test_bad_statements_name_the_place(loaded, client, capsys, sql, expected):
    _, db = loaded
    line = cli_error(capsys, "query", "--db", db, sql)
    assert expected in line
    assert http_error(client, "/query", {"sql": sql}) == line


@pytest.mark.parametrize("where, keeps", [
    ("duration_s > 1e5", lambda row: False),
    ("duration_s < 1E5 AND start_s > -4 AND end_s >= 2.5E-3", lambda row: True),
    ("start_s >= 2.0e0", lambda row: row["start_s"] >= 2),
])
def test_numbers_in_every_notation_filter_as_numbers(loaded, client, where, keeps):
    _, db = loaded
    everything = run_query(db, "SELECT key, start_s FROM videos LIMIT 1000")
    expected = sorted(row["key"] for row in everything if keeps(row))
    got = run_query(db, f"SELECT key FROM videos WHERE {where} LIMIT 1000")
    assert sorted(row["key"] for row in got) == expected
    response = client.post("/query", json={"sql": f"SELECT key FROM videos WHERE {where} LIMIT 1000"})
    assert sorted(row["key"] for row in response.json()) == expected


def test_a_missing_collection_is_named_before_any_column(tmp_path, empty_server, capsys):
    sql = ("SELECT video_id, colour, score FROM videos WHERE colour = 'red' "
           "ORDER BY similarity(TEXT('a red circle')) DESC LIMIT 3")
    expected = "no such collection in the database (load one with `vidx load`): 'videos' at line 1, column 37"
    assert cli_error(capsys, "query", "--db", empty_server, sql) == expected
    embedded = str(tmp_path / "empty.db")
    VectorStore(embedded)  # a database that holds nothing (where none exists, readers say so: test_failures.py)
    assert cli_error(capsys, "query", "--db", embedded, sql) == expected
    assert http_error(TestClient(create_app(embedded, cache_dir=tmp_path)), "/query", {"sql": sql}) == expected


def test_a_video_that_does_not_exist(loaded, client, capsys):
    _, db = loaded
    assert cli_error(capsys, "search", "--db", db, "--video", "/nonexistent.mp4") == "no such file: /nonexistent.mp4"
    # A server opens no path it is given: the same request names no video of its library.
    line = http_error(client, "/search", {"video": "/nonexistent.mp4"}, 404)
    assert line.startswith("VIDEO('/nonexistent.mp4') is not a video of the served library")


def test_an_unknown_video_id_and_a_bad_filter(loaded, client, capsys):
    _, db = loaded
    line = cli_error(capsys, "search", "--db", db, "--video-id", "no-such-video")
    assert line == "video 'no-such-video': no such video in the collection"
    assert http_error(client, "/search", {"video_id": "no-such-video"}, 404) == line
    line = cli_error(capsys, "search", "--db", db, "--text", "x", "--where", "colour === 'red'")
    assert line.startswith("search failed (--where \"colour === 'red'\"):")
    assert http_error(client, "/search", {"text": "x", "where": "colour === 'red'"}) == line


def test_an_empty_text_is_refused(loaded, client, capsys):
    _, db = loaded
    expected = "the text to search for is empty"
    assert cli_error(capsys, "search", "--db", db, "--text", " ") == expected
    assert http_error(client, "/search", {"text": ""}) == expected
    sql = "SELECT key FROM videos ORDER BY similarity(TEXT('')) DESC"
    assert cli_error(capsys, "query", "--db", db, sql) == expected


def test_a_parameter_without_a_value(loaded, capsys):
    _, db = loaded
    assert cli_error(capsys, "query", "--db", db, "--param", "colour", "SELECT * FROM videos") == \
        "--param 'colour': expected NAME=VALUE"


def test_load_creates_the_directory_of_a_new_database(loaded, tmp_path, capsys):
    output, _ = loaded
    db = tmp_path / "new" / "dir" / "v.db"
    assert main(["load", "--embeddings", str(output), "--db", str(db)]) == 0
    assert main(["query", "--db", str(db), "--json", "SELECT key FROM videos WHERE segment = 0 LIMIT 1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('[{"key": ')

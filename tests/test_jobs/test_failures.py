"""What is not the user's doing is not a user error: a vector database that cannot be reached or
fails is exit 1 and HTTP 503, a check of vidx's own that fails is exit 1, each one line; and a
command that only reads creates nothing where no database exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from jobs.__main__ import main
from jobs.server.app import create_app
from servers import free_port, start_milvus_lite_server
from storage.table.dataset import write_part
from storage.milvus.store import VectorStore

MODEL = {"spec": {"name": "tiny"}, "fingerprint": "f"}


def one_line(capsys, argv: list[str], code: int) -> str:
    """The one line `vidx ARGV` prints on stderr, exiting `code`, without its prefix."""
    assert main(argv) == code
    err = capsys.readouterr().err
    prefix = f"vidx {argv[0]}: error: "
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith(prefix), err
    return err.strip()[len(prefix):]


def embeddings(directory: Path, n: int = 20, dim: int = 8) -> str:
    vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pa.table({"key": [f"v{i}#0" for i in range(n)], "video_id": [f"v{i}" for i in range(n)],
                      "status": ["ok"] * n, "run_id": ["run-1"] * n,
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)})
    write_part(table.replace_schema_metadata({b"vidx.model": json.dumps(MODEL).encode()}),
               str(directory / "videos"), "key")
    return str(directory)


def test_a_database_that_cannot_be_reached_is_exit_1_naming_it(capsys):
    db = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for argv in (["query", "--db", db, "SELECT * FROM videos"], ["search", "--db", db, "--text", "a dog"]):
        line = one_line(capsys, argv, 1)
        assert line.startswith(f"cannot open vector database {db}: ") and "server unavailable" in line


def test_a_failed_check_after_a_load_is_exit_1_and_serves_nothing(tmp_path, capsys, monkeypatch):
    output, db = embeddings(tmp_path / "index"), str(tmp_path / "vidx.db")
    monkeypatch.setattr(VectorStore, "count", lambda self, name: 7)  # the database lost rows
    line = one_line(capsys, ["load", "--embeddings", output, "--db", db], 1)
    assert line.startswith("validation of videos_") and line.endswith(": 7 rows, expected 20")
    monkeypatch.undo()
    store = VectorStore(db)
    assert store.alias_target("videos") is None and store.versions("videos") == []


@pytest.mark.parametrize("argv", [
    ["query", "SELECT * FROM videos"], ["search", "--text", "a dog"], ["serve"],
])
def test_a_command_that_only_reads_creates_no_database(tmp_path, capsys, argv):
    db = tmp_path / "no" / "such" / "vidx.db"
    line = one_line(capsys, [argv[0], "--db", str(db), *argv[1:]], 2)
    assert line.startswith(f"no vector database at {db}")
    assert not (tmp_path / "no").exists()


@pytest.mark.slow
def test_a_database_gone_mid_traffic_is_a_503_and_the_server_says_why(tmp_path):
    process, uri = start_milvus_lite_server(tmp_path / "shared.db")
    with TestClient(create_app(uri, cache_dir=tmp_path / "thumbnails")) as client:
        try:
            refused = client.post("/query", json={"sql": "SELECT * FROM videos"})
            assert refused.status_code == 400 and refused.json()["error"].startswith("no such collection")
        finally:
            process.kill()  # the database goes away; the vidx server stays up
            process.wait(timeout=30)
        for path, body in (("/query", {"sql": "SELECT * FROM videos"}), ("/search", {"text": "a dog"})):
            response = client.post(path, json=body)
            assert response.status_code == 503 and response.headers["retry-after"], response.text
            error = response.json()["error"]
            assert error.startswith(f"vector database {uri} failed") and "\n" not in error

"""What a request may bring (jobs/server/inputs.py): the server opens only what it serves. VIDEO(..)
is a library video by id or uri, or a clip uploaded with the request (decoded from a temporary file,
removed whatever the answer); never a path or URL a client names. Forms and bodies are bounded."""

from __future__ import annotations

import http.server
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from jobs.server.app import create_app
from jobs.server.inputs import MAX_FIELDS
from servers import free_port

UPLOAD_LIMIT = 200_000  # bytes: above a synth clip (~12 KB), below what the tests send to be refused


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("thumbnails")


@pytest.fixture(scope="module")
def client(loaded, cache_dir) -> TestClient:
    _, db = loaded
    with TestClient(create_app(db, cache_dir=cache_dir, max_upload_mb=UPLOAD_LIMIT / 2**20)) as client:
        yield client


@pytest.fixture(scope="module")
def outside(library, tmp_path_factory) -> Path:
    """A good video outside the library: a server that decoded it would answer with results."""
    path = tmp_path_factory.mktemp("outside") / "clip.mp4"
    shutil.copy(library[0]["uri"], path)
    return path


@pytest.fixture(scope="module")
def probe_server(outside):
    """An HTTP server on 127.0.0.1 serving the outside clip, recording every request it receives."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append((self.command, self.path))
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            self.wfile.write(outside.read_bytes())

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/clip.mp4", requests
    server.shutdown()
    thread.join(timeout=10)


def probes(library, outside, probe_server) -> list[str]:
    library_dir = Path(library[0]["uri"]).parent
    return ["/etc/passwd", "../../../../../../etc/passwd", f"{library_dir}/../../{outside.parent.name}/clip.mp4",
            str(outside), f"file://{outside}", probe_server[0]]


def test_video_over_http_names_only_the_library(client, library, outside, probe_server):
    for value in probes(library, outside, probe_server):
        sql = f"SELECT video_id FROM videos ORDER BY similarity(VIDEO('{value}')) DESC LIMIT 3"
        response = client.post("/query", json={"sql": sql})
        assert response.status_code == 404, (value, response.text)
        assert response.json()["error"] == (f"VIDEO({value!r}) is not a video of the served library: give a "
                                            "video_id or uri it holds, or upload a clip")
        assert client.post("/search", json={"video": value}).status_code == 404
        assert client.post("/search", json={"video_id": value}).status_code == 404
        assert client.get(f"/videos/{quote(value, safe='')}").status_code == 404
        assert client.get(f"/thumbnails/{quote(value, safe='')}").status_code == 404
    assert probe_server[1] == []  # no HEAD, no GET: the server never fetched the URL


def test_a_library_video_by_id_or_uri(client, library):
    first = library[0]
    for value in (first["video_id"], first["uri"]):
        hits = client.post("/search", json={"video": value, "k": 3, "where": "segment == 0"}).json()
        assert hits[0]["video_id"] == first["video_id"]
        sql = f"SELECT video_id FROM videos WHERE segment = 0 ORDER BY similarity(VIDEO('{value}')) DESC LIMIT 3"
        assert client.post("/query", json={"sql": sql}).json()[0]["video_id"] == first["video_id"]


def test_an_uploaded_clip_is_decoded_from_a_temporary_file(client, library):
    """The upload is another copy of a library video: it finds that video, and leaves no file behind."""
    first = library[0]
    clip = Path(first["uri"]).read_bytes()
    before = set(Path(tempfile.gettempdir()).glob("vidx-upload-*"))
    response = client.post("/search", data={"k": "3", "where": "segment == 0"},
                           files={"clip": ("holiday.mp4", clip, "video/mp4")})
    assert response.status_code == 200, response.text
    assert response.json()[0]["video_id"] == first["video_id"]
    response = client.post("/query", data={"sql": "SELECT video_id, score FROM videos WHERE segment = 0 AND "
                                                   "colour = :c ORDER BY similarity(VIDEO(:clip)) DESC LIMIT 2",
                                            "c": first["colour"]},
                           files={"clip": ("clip.mp4", clip, "video/mp4")})
    assert response.status_code == 200, response.text
    assert response.json()[0]["video_id"] == first["video_id"]
    assert set(Path(tempfile.gettempdir()).glob("vidx-upload-*")) == before


def test_an_upload_that_is_not_a_video_is_a_400(client):
    response = client.post("/search", files={"clip": ("notes.mp4", b"just some text\n" * 100, "video/mp4")})
    assert response.status_code == 400 and response.json()["error"].startswith("not a readable video")
    response = client.post("/search", files={"clip": ("empty.mp4", b"", "video/mp4")})
    assert response.status_code == 400 and response.json()["error"] == "uploaded clip 'empty.mp4' is empty"


def test_a_form_is_checked_and_its_clips_removed_whatever_the_answer(client, library):
    """Too many fields (400), a field over its limit (422), a clip that is no video (400): no file is left."""
    clip = Path(library[0]["uri"]).read_bytes()
    before = set(Path(tempfile.gettempdir()).glob("vidx-upload-*"))
    fields = {f"p{i}": "x" for i in range(MAX_FIELDS)}
    response = client.post("/query", data={"sql": "SELECT video_id FROM videos LIMIT 1", **fields},
                           files={"clip": ("clip.mp4", clip, "video/mp4")})
    assert response.status_code == 400 and "Too many fields" in response.text
    response = client.post("/search", data={"k": "0"}, files={"clip": ("clip.mp4", clip, "video/mp4")})
    assert response.status_code == 422 and [e["loc"] for e in response.json()["detail"]] == [["k"]]
    response = client.post("/query", data={"sql": "SELECT video_id FROM videos ORDER BY similarity(VIDEO(:c)) DESC"},
                           files={"c": ("notes.mp4", b"just some text\n" * 100, "video/mp4")})
    assert response.status_code == 400 and response.json()["error"].startswith("not a readable video")
    assert set(Path(tempfile.gettempdir()).glob("vidx-upload-*")) == before


def test_a_body_over_the_limit_is_a_413(client):
    big = b"\0" * (UPLOAD_LIMIT + 1)
    response = client.post("/search", files={"clip": ("big.mp4", big, "video/mp4")})  # with a Content-Length
    assert response.status_code == 413 and "limit" in response.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        boundary = b"--xyz\r\nContent-Disposition: form-data; name=\"clip\"; filename=\"big.mp4\"\r\n\r\n"
        yield boundary
        for _ in range(UPLOAD_LIMIT // 10_000 + 2):
            yield b"\0" * 10_000

    response = client.post("/search", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert response.status_code == 413 and "limit" in response.json()["error"]

"""The page and what it shows (jobs/server/media.py): thumbnails made once at a segment's start,
the library's videos streamed with range requests, behind the token from a header or the page's
cookie; only what the served collection holds."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import numpy as np
import PIL.Image
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from encoders.thumbnails import frame_at
from jobs.server.app import create_app


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("thumbnails")


@pytest.fixture(scope="module")
def client(loaded, cache_dir) -> TestClient:
    _, db = loaded
    with TestClient(create_app(db, cache_dir=cache_dir)) as client:
        yield client


def test_videos_stream_with_range_requests(client, library):
    first = library[0]
    data = Path(first["uri"]).read_bytes()
    whole = client.get(f"/videos/{first['video_id']}")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/videos/{first['video_id']}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"


def pixels(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def test_thumbnails_are_made_once_at_the_segment_start(client, loaded, cache_dir):
    output, _ = loaded
    segment = next(r for r in pq.read_table(output / "videos").to_pylist() if r["segment"] == 1)
    url = f"/thumbnails/{quote(segment['key'], safe='')}"
    response = client.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    shown = pixels(PIL.Image.open(io.BytesIO(response.content)))
    at_start, first = pixels(frame_at(segment["uri"], segment["start_s"])), pixels(frame_at(segment["uri"], 0.0))
    assert segment["start_s"] == 2.0 and shown.shape == at_start.shape
    # JPEG leaves ~4 levels of the videos' noise; the shape has moved since 0 s: ~13
    assert np.abs(shown - at_start).mean() < np.abs(shown - first).mean() / 2
    [cached] = [p for p in cache_dir.iterdir() if p.suffix == ".jpg"]
    made = cached.stat().st_mtime_ns
    assert client.get(url).content == response.content and cached.stat().st_mtime_ns == made


def test_the_page_and_its_library(client):
    page = client.get("/")
    assert page.status_code == 200 and '<form id="search" role="search">' in page.text
    assert client.get("/static/page.js").status_code == 200
    body = client.get("/openapi.json").json()["paths"]["/search"]["post"]["requestBody"]["content"]
    assert {"text", "video", "per_video"} <= set(body["application/json"]["schema"]["properties"])
    library = client.get("/library").json()
    assert library["videos"]["metadata"] == ["background", "colour", "direction", "shape"]
    assert library["videos"]["rows"] > 0 and library["captions"]["model"]["name"] == "tiny"


def test_media_need_the_token_from_a_header_or_the_pages_cookie(loaded, library, cache_dir):
    _, db = loaded
    with TestClient(create_app(db, token="s3cret", cache_dir=cache_dir)) as client:
        url = f"/videos/{library[0]['video_id']}"
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        client.cookies.set("vidx_token", "s3cret")
        assert client.get(url).status_code == 200 and client.get("/").status_code == 200

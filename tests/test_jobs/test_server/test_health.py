"""Readiness and metrics (jobs/server/health.py): /healthz names the served versions, or says why the
server is not ready; /metrics in Prometheus' text format. A database that stops answering, or is
gone, is a bounded 503 (one line) while it is away, and the same server answers again by itself
once it is back; a version swap under clients fails no request."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from http_server import served
from jobs.load import load
from jobs.server.app import create_app
from metrics_text import samples
from processes import wait_for
from rows import assert_same_rows
from servers import start_milvus_lite_server
from storage.milvus.store import VectorStore
from storage.milvus.versions import retire_versions
from storage.schema import CAPTIONS, VIDEOS

TOKEN = "s3cret-token"
DATABASE_TIMEOUT_S = 2.0
# What an answer may take while the database is gone: its timeout on each of the few reads a
# request makes, and scheduling on a loaded 2-core machine.
OUTAGE_ANSWER_BOUND_S = 20.0
REQUESTS = [("/search", {"text": "a red circle", "k": 3}),
            ("/search", {"video_id": "synth_11_00000", "k": 3}),
            ("/query", {"sql": "SELECT video_id, score FROM videos WHERE colour = 'red' "
                               "ORDER BY similarity(TEXT('a red circle')) DESC LIMIT 3"})]


@pytest.fixture(scope="module")
def client(loaded) -> TestClient:
    """A server that needs TOKEN (/healthz needs none)."""
    _, db = loaded
    with TestClient(create_app(db, token=TOKEN)) as client:
        yield client


def test_healthz_names_the_served_versions(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["videos"].startswith("videos_") and body["captions"].startswith("captions_")


def test_metrics_name_the_served_versions_and_the_encoder_batches(lite_db):
    with TestClient(create_app(lite_db)) as client:
        health = client.get("/healthz").json()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: client.post("/search", json={"text": f"a shape {i}", "k": 1}), range(16)))
        assert {answer.status_code for answer in answers} == {200}
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    counted = samples(response.text)
    assert counted[("vidx_served_collection", (("alias", "videos"), ("collection", health["videos"])))] == 1
    assert counted[("vidx_served_collection", (("alias", "captions"), ("collection", health["captions"])))] == 1
    assert counted[("vidx_ready", ())] == 1
    assert counted[("vidx_encode_batch_size_count", ())] >= 1 and counted[("vidx_encode_batch_size_sum", ())] == 16
    assert counted[("vidx_request_duration_seconds_count", (("route", "/search"), ("status", "200")))] == 16


def test_a_server_with_nothing_loaded_is_not_ready_and_says_why(lite_db):
    with TestClient(create_app(lite_db, collection="nothing_here")) as client:
        response = client.get("/healthz")
        assert response.status_code == 503 and response.json()["status"] == "not ready"
        assert "no collection is served as 'nothing_here'" in response.json()["error"]
        assert samples(client.get("/metrics").text)[("vidx_ready", ())] == 0


def test_a_swap_under_32_clients_fails_no_request(server_db, served_index):
    load(str(served_index), server_db)
    store, stop, outcomes = VectorStore(server_db), threading.Event(), []

    def client(number: int, url: str) -> None:
        path, body = REQUESTS[number % len(REQUESTS)]
        with httpx.Client(base_url=url, timeout=120) as http:
            while not stop.is_set():
                response = http.post(path, json=body)
                outcomes.append((response.status_code, response.text[:200]))

    with served(create_app(server_db)) as url, ThreadPoolExecutor(32) as pool:
        served_before = httpx.get(url + "/healthz").json()
        clients = [pool.submit(client, number, url) for number in range(32)]
        try:
            for _ in range(2):  # two versions built whole: the second retires the first one's previous version
                load(str(served_index), server_db, full=True)
                retired = {alias: retire_versions(store, alias, keep=2) for alias in (VIDEOS, CAPTIONS)}
        finally:
            stop.set()
            for future in clients:
                future.result()
        served_after = httpx.get(url + "/healthz").json()
    assert retired[VIDEOS] == [served_before[VIDEOS]] and served_after[VIDEOS] != served_before[VIDEOS]
    failed = [outcome for outcome in outcomes if outcome[0] != 200]
    assert len(outcomes) > 32 and failed == []


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


# Last: this module's own Milvus server stays up until the module ends.
@pytest.fixture(scope="module")
def own_milvus(tmp_path_factory):
    """A Milvus server of this module's own: the test stops it (SIGSTOP), which the session's must not."""
    from servers import MilvusStandalone

    server = MilvusStandalone(tmp_path_factory.mktemp("milvus_outage"))
    server.start()
    yield server
    os.kill(server.pid, signal.SIGCONT)
    server.stop()


def timed_answers(url: str) -> list[tuple[int, dict, float]]:
    """Each of REQUESTS sent at once: (status, body, seconds)."""
    def send(request: tuple[str, dict]) -> tuple[int, dict, float]:
        started = time.monotonic()
        response = httpx.post(url + request[0], json=request[1], timeout=120)
        return response.status_code, response.json(), time.monotonic() - started

    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        return list(pool.map(send, REQUESTS))


def test_a_database_that_stops_answering_is_a_bounded_503_until_it_is_back(own_milvus, served_index):
    load(str(served_index), own_milvus.uri)
    with served(create_app(own_milvus.uri, database_timeout_s=DATABASE_TIMEOUT_S)) as url:
        before = timed_answers(url)
        assert [status for status, *_ in before] == [200] * len(REQUESTS)
        os.kill(own_milvus.pid, signal.SIGSTOP)
        try:
            during = timed_answers(url)
            health = httpx.get(url + "/healthz", timeout=120)
        finally:
            os.kill(own_milvus.pid, signal.SIGCONT)
        for status, body, seconds in during:
            assert status == 503 and seconds < OUTAGE_ANSWER_BOUND_S, (status, body, seconds)
            assert list(body) == ["error"] and "\n" not in body["error"] and own_milvus.uri in body["error"]
        assert health.status_code == 503 and health.json()["status"] == "not ready"
        wait_for(lambda: httpx.get(url + "/healthz", timeout=120).status_code == 200, timeout=120)
        after = timed_answers(url)
        for (status, body, _), (status_before, body_before, _) in zip(after, before):
            assert status == status_before
            assert_same_rows(body, body_before)  # the same hits: the captions met other batches

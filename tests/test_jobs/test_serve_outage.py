"""A served Milvus server that stops answering, and a nightly swap, under clients: a bounded 503
(one line) while it is gone, readiness that says so, and the same server answering again by
itself once it is back; a version swap that fails no request."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from http_server import served
from jobs.load import load
from jobs.server.app import create_app
from processes import wait_for
from rows import assert_same_rows
from storage.schema import CAPTIONS, VIDEOS
from storage.milvus.store import VectorStore
from storage.milvus.versions import retire_versions

DATABASE_TIMEOUT_S = 2.0
# What an answer may take while the database is gone: its timeout on each of the few reads a
# request makes, and scheduling on a loaded 2-core machine.
OUTAGE_ANSWER_BOUND_S = 20.0
REQUESTS = [("/search", {"text": "a red circle", "k": 3}),
            ("/search", {"video_id": "synth_11_00000", "k": 3}),
            ("/query", {"sql": "SELECT video_id, score FROM videos WHERE colour = 'red' "
                               "ORDER BY similarity(TEXT('a red circle')) DESC LIMIT 3"})]


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


def test_a_nightly_swap_under_32_clients_fails_no_request(server_db, served_index):
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
            for _ in range(2):  # two nights: the second retires the first night's previous version
                load(str(served_index), server_db)
                retired = {alias: retire_versions(store, alias, keep=2) for alias in (VIDEOS, CAPTIONS)}
        finally:
            stop.set()
            for future in clients:
                future.result()
        served_after = httpx.get(url + "/healthz").json()
    assert retired[VIDEOS] == [served_before[VIDEOS]] and served_after[VIDEOS] != served_before[VIDEOS]
    failed = [outcome for outcome in outcomes if outcome[0] != 200]
    assert len(outcomes) > 32 and failed == []

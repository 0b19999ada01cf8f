"""Admission control (jobs/server/admission.py): a bounded number of requests in flight and a bounded
queue; the rest answered 503 with Retry-After, and counted."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from jobs.server.app import create_app
from metrics_text import samples
from processes import wait_for


def test_past_its_places_and_queue_a_server_answers_503_with_retry_after_and_counts_it(lite_db):
    entered, release = threading.Event(), threading.Event()

    def held(model, text):  # the first request holds the only place
        entered.set()
        release.wait(60)
        return model.encode_text([text])[0]

    count = {"sql": "SELECT count(*) FROM videos"}
    with TestClient(create_app(lite_db, max_in_flight=1, max_queue=1, encode_text=held)) as client, \
            ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/search", json={"text": "a red circle", "k": 2})
        assert entered.wait(60)
        queued = pool.submit(client.post, "/query", json=count)
        wait_for(lambda: samples(client.get("/metrics").text)[("vidx_requests_queued", ())] == 1)
        busy = client.post("/query", json=count)
        release.set()
        assert first.result().status_code == 200 and queued.result().status_code == 200
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"].startswith("the server is busy: 1 searches and queries wait for one of its places")
        counted = samples(client.get("/metrics").text)
    assert counted[("vidx_requests_rejected_total", ())] == 1
    assert counted[("vidx_request_duration_seconds_count", (("route", "/search"), ("status", "200")))] == 1
    assert counted[("vidx_request_duration_seconds_count", (("route", "/query"), ("status", "503")))] == 1
    assert counted[("vidx_request_duration_seconds_count", (("route", "/query"), ("status", "200")))] == 1
    assert counted[("vidx_requests_in_flight", ())] == 0 and counted[("vidx_requests_queued", ())] == 0

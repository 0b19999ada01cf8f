"""Many clients at once: captions encoded together, a bounded number of requests in flight (the
rest answered 503 with Retry-After), readiness, and metrics in Prometheus' text format."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from errors import UserError
from jobs.serve import serve
from jobs.server.app import create_app
from jobs.server.batching import TextBatcher
from processes import wait_for


def samples(metrics_text: str) -> dict[tuple, float]:
    """(name, sorted labels) -> value, as Prometheus' own parser reads /metrics."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics_text) for s in family.samples}


def test_concurrent_captions_are_encoded_together_as_each_alone(tiny_model):
    sizes = []
    captions = [f"a red circle moving left, number {i}" for i in range(24)]
    with TextBatcher(max_batch=8, max_wait_s=0.05, on_batch=sizes.append) as batcher, \
            ThreadPoolExecutor(len(captions)) as pool:
        vectors = list(pool.map(lambda text: batcher(tiny_model, text), captions))
    np.testing.assert_allclose(np.stack(vectors), tiny_model.encode_text(captions), atol=1e-5)
    assert sum(sizes) == len(captions) and max(sizes) > 1 and max(sizes) <= 8


def test_an_encoder_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on(tiny_model):
    class Broken:
        def encode_text(self, texts):
            raise RuntimeError("out of memory")

    with TextBatcher(max_wait_s=0.05) as batcher:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(batcher, Broken(), f"caption {i}") for i in range(4)]
            for future in futures:
                with pytest.raises(RuntimeError, match="out of memory"):
                    future.result()
        np.testing.assert_allclose(batcher(tiny_model, "a blue square"), tiny_model.encode_text(["a blue square"])[0],
                                   atol=1e-5)


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


def test_replicas_refuse_a_milvus_lite_database_and_limits_must_be_sane(tmp_path):
    with pytest.raises(UserError, match="milvus-lite .* lets one process own a database: give a Milvus server"):
        serve(str(tmp_path / "vidx.db"), ray=True)
    with pytest.raises(UserError, match="--max-in-flight 0: should be greater than or equal to 1"):
        serve(str(tmp_path / "vidx.db"), max_in_flight=0)

"""`vidx serve --ray`: two replicas on Ray Serve against the session's Milvus server answer as
`vidx serve` does, and a replica killed under load is replaced with only its requests lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from jobs.query import run_query
from jobs.search import search
from processes import job_processes, kill_group, wait_for
from rows import assert_same_rows
from servers import free_port

pytestmark = pytest.mark.slow
TOKEN = "replica-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPLICA = b"ServeReplica:vidx:VidxReplica"  # the process title Ray gives each replica
CLIENTS = 8


def replica_pids(process: subprocess.Popen) -> set[int]:
    pids = set()
    for pid in job_processes(process):
        try:
            if REPLICA in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.add(pid)
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def replicas(server_db_loaded, tmp_path_factory):
    """(base URL, the `vidx serve --ray` process): two replicas of one core each on a local Ray of its own."""
    port, log = free_port(), tmp_path_factory.mktemp("ray_serve") / "serve.log"
    env = {**os.environ, "VIDX_TOKEN": TOKEN, "RAY_ADDRESS": ""}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "jobs", "serve", "--ray", "--db", server_db_loaded,
                                    "--port", str(port), "--replicas", "2", "--replica-cpus", "0.5"],
                                   stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or _ready(url), timeout=300)
        assert process.poll() is None, log.read_text()[-3000:]
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)  # the app is deleted, then the local Ray stops with the process
        try:
            process.wait(timeout=60)
        finally:
            kill_group(process)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def test_replicas_answer_as_one_server_with_the_same_token_and_routes(replicas, server_db_loaded):
    url, process = replicas
    assert len(replica_pids(process)) == 2
    body = {"text": "a red circle", "k": 5, "where": "segment == 0"}
    assert httpx.post(url + "/search", json=body).status_code == 401
    response = httpx.post(url + "/search", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 200
    assert_same_rows(response.json(), search(server_db_loaded, text="a red circle", k=5, where="segment == 0"))
    sql = "SELECT colour, count(*) AS n FROM videos GROUP BY colour ORDER BY colour"
    response = httpx.post(url + "/query", json={"sql": sql}, headers=AUTH, timeout=60)
    assert response.status_code == 200 and response.json() == run_query(server_db_loaded, sql)
    metrics = httpx.get(url + "/metrics", headers=AUTH, timeout=60)
    assert metrics.status_code == 200 and "vidx_encode_batch_size_count" in metrics.text


def test_a_replica_killed_under_load_is_replaced_and_only_its_requests_fail(replicas):
    url, process = replicas
    stop, outcomes = threading.Event(), []

    def client(number: int) -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
            while not stop.is_set():
                try:
                    outcomes.append(http.post("/search", json={"text": f"a shape moving {number}", "k": 3})
                                    .status_code)
                except httpx.HTTPError:
                    outcomes.append("no answer")

    with ThreadPoolExecutor(CLIENTS) as pool:
        clients = [pool.submit(client, number) for number in range(CLIENTS)]
        wait_for(lambda: len(outcomes) >= 20, timeout=120)
        killed = min(replica_pids(process))
        os.kill(killed, signal.SIGKILL)
        answered_at_kill = len(outcomes)
        wait_for(lambda: len(replica_pids(process) - {killed}) == 2, timeout=240)  # the controller replaced it
        wait_for(lambda: len(outcomes) >= answered_at_kill + 40, timeout=120)
        stop.set()
        for future in clients:
            future.result()
    failed = [outcome for outcome in outcomes if outcome != 200]
    print(f"{len(outcomes)} requests, {len(failed)} failed when replica {killed} was killed: {failed}")
    # those in flight on the killed replica, and any the proxy sent it before the controller saw it die
    assert len(failed) <= 2 * CLIENTS
    assert outcomes[-CLIENTS:] == [200] * CLIENTS

"""`ray start --head` + `ray job submit --working-dir . -- python -m jobs index ...` on this machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from jobs.synth import synth
from servers import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def processes_of(temp_dir: str) -> set[int]:
    """Ray's daemons name the temp dir in their command lines; workers are their descendants."""
    parents, found = {}, set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            pid = int(entry)
            parents[pid] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if temp_dir.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.add(pid)
        except (OSError, ValueError):
            continue
    while more := {pid for pid, parent in parents.items() if parent in found} - found:
        found |= more
    return found


@pytest.fixture
def ray_head(tmp_path):
    """A real head node, stopped afterwards by process id (`ray stop` would stop every Ray here)."""
    temp_dir = f"/tmp/vr_{uuid.uuid4().hex[:8]}"  # short: Ray's socket paths have a length limit
    dashboard = free_port()
    # The job's `python` is the head's: this environment's, as on a cluster set up from ray_cluster.yaml.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": path}
    # Every port its own: another Ray (the in-process one of other tests) may hold the defaults.
    ports = [f"--{name}={free_port()}" for name in (
        "port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "node-manager-port", "object-manager-port", "ray-client-server-port")]
    subprocess.run([RAY, "start", "--head", *ports, "--num-cpus=2", f"--temp-dir={temp_dir}",
                    "--include-dashboard=true", f"--dashboard-port={dashboard}", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=120)
    try:
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        for pid in processes_of(temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_index_runs_under_ray_job_submit(ray_head, tmp_path):
    address, env = ray_head
    manifest = synth(tmp_path / "synth", n=4, seed=5)
    output = tmp_path / "index"
    command = [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
               "python", "-m", "jobs", "index", "--model", "tiny", "--manifest", str(manifest), "--output", str(output)]
    for _ in range(30):  # a fresh head's job agent takes a few seconds to come up
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
        if "No available agent" not in result.stderr:
            break
        time.sleep(2)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout
    table = pq.read_table(output / "videos")
    assert table.num_rows == 4 and set(table["status"].to_pylist()) == {"ok"}


def test_cluster_config_is_valid_for_the_ray_cluster_launcher():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((REPO / "ray_cluster.yaml").read_text()))
    validate_config(config)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head must schedule no work"
    assert any(cmd.startswith("cd ~/vidx && python3 -m pip install -e .") for cmd in config["setup_commands"])

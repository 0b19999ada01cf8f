"""Ray clusters of several nodes on this machine, made as `ray start` makes them on real machines:
each node with its own temp dir and ports, found and stopped by process id (`ray stop` would stop
every Ray here, other tests' included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from servers import free_port

RAY = str(Path(sys.executable).parent / "ray")
# Per node: the tests move a few MB of frames at a time; Ray's default is 30% of this machine's RAM.
OBJECT_STORE_BYTES = 300 * 1024 * 1024


def processes_of(temp_dir: str) -> set[int]:
    """Ray's daemons name their node's temp dir in their command lines; workers are their descendants."""
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


def kill_processes(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _ports(*names: str) -> list[str]:
    """Every port its own: other Rays on this machine may hold the defaults."""
    return [f"--{name}={free_port()}" for name in names]


@dataclass
class Node:
    temp_dir: str
    num_cpus: int
    num_gpus: int = 0
    node_id: str = ""


@dataclass
class LocalCluster:
    """A head that schedules no work (as in ray_cluster.yaml) plus worker nodes, all on 127.0.0.1."""

    env: dict
    nodes: list[Node] = field(default_factory=list)
    address: str = ""  # GCS address, for --address
    dashboard: str = ""  # http://..., for `ray job submit` and the state API

    def _start(self, node: Node, *args: str) -> Node:
        known = set(self.node_ids())
        command = [RAY, "start", *args, f"--num-cpus={node.num_cpus}", f"--num-gpus={node.num_gpus}",
                   f"--temp-dir={node.temp_dir}", f"--object-store-memory={OBJECT_STORE_BYTES}",
                   "--disable-usage-stats"]
        for _ in range(3):  # a free port can be taken by another process before Ray binds it
            ports = _ports("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                           "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port")
            result = subprocess.run(command + ports, env=self.env, capture_output=True, text=True, timeout=300)
            if result.returncode == 0:
                break
            kill_processes(processes_of(node.temp_dir))
        else:
            raise RuntimeError(f"ray start failed: {result.stdout[-2000:]} {result.stderr[-2000:]}")
        self.nodes.append(node)
        deadline = time.monotonic() + 120
        while not (new := set(self.node_ids()) - known):
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node.temp_dir} did not join")
            time.sleep(0.5)
        node.node_id = new.pop()
        return node

    def start_head(self, num_cpus: int = 0) -> Node:
        gcs, dashboard = free_port(), free_port()
        self.address, self.dashboard = f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}"
        return self._start(_new_node(num_cpus), "--head", f"--port={gcs}", "--include-dashboard=true",
                           f"--dashboard-port={dashboard}", *_ports("ray-client-server-port"))

    def add_worker(self, num_cpus: int, num_gpus: int = 0) -> Node:
        node = _new_node(num_cpus, num_gpus)
        return self._start(node, f"--address={self.address}")

    def node_ids(self) -> list[str]:
        """Alive nodes, from the dashboard's state API (before the head is up: none)."""
        if not self.dashboard:
            return []
        try:
            with urllib.request.urlopen(f"{self.dashboard}/api/v0/nodes?limit=100", timeout=10) as reply:
                nodes = json.load(reply)["data"]["result"]["result"]
        except OSError:
            return []
        return [n["node_id"] for n in nodes if n["state"] == "ALIVE"]

    def submit(self, *entrypoint: str, working_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
        """`ray job submit --working-dir DIR -- ENTRYPOINT`, waiting for the job to end."""
        command = [RAY, "job", "submit", "--address", self.dashboard, "--working-dir", str(working_dir), "--",
                   *entrypoint]
        for _ in range(30):  # a fresh head's job agent takes a few seconds to come up
            result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
            if "No available agent" not in result.stderr:
                return result
            time.sleep(2)
        return result

    def kill(self, node: Node) -> None:
        """The node is lost, as a machine that dies: every process of it, SIGKILL."""
        kill_processes(processes_of(node.temp_dir))
        self.nodes.remove(node)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            kill_processes(processes_of(node.temp_dir))
        self.nodes.clear()


def _new_node(num_cpus: int, num_gpus: int = 0) -> Node:
    return Node(f"/tmp/vr{uuid.uuid4().hex[:10]}", num_cpus, num_gpus)  # short: socket paths have a length limit


def job_environment(extra: dict) -> dict:
    """This process's environment for Ray nodes and jobs: this venv first on PATH (a job's `python`
    is the node's), token auth off (local tests), never another cluster's address."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_AUTH_MODE": "disabled", "PATH": path, **extra}

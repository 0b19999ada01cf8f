"""Local servers for tests and benchmarks: free ports, a real Milvus standalone server, and
milvus-lite's own server mode.

The `milvus` package (a test-only dependency) ships Milvus standalone 2.3.5 as one native
process with an embedded etcd. Every port it opens is given a free one here, so sessions can run
side by side: the proxy (the client port), the coordinators' and nodes' gRPC ports, the metrics
and health port, and the embedded etcd's client and peer ports (which the packaged configuration
leaves at etcd's defaults, 2379 and 2380, unless an etcd configuration file says otherwise).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

STARTUP_SECONDS = 60

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def milvus_setting(text: str) -> tuple[str, str]:
    """A benchmark's --server-setting KEY=VALUE, as a (milvus.yaml key, value) pair."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. dataCoord.segment.maxSize=1024")
    return key, value


def _write_etcd_config(path: Path, client_port: int) -> None:
    """The embedded etcd's listeners on free ports (Milvus reads this file via etcd.config.path).

    A test server's etcd skips fsync and waits longer for its own heartbeats: on a loaded 2-core
    machine an fsync or scheduling stall timed its requests out, the Milvus sessions' leases
    expired, and the server stopped serving (state Abnormal) for the rest of the test run."""
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{free_port()}"
    path.write_text(f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
                    f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
                    f"initial-cluster: default={peer}\n"
                    "unsafe-no-fsync: true\nheartbeat-interval: 500\nelection-timeout: 5000\n")


class MilvusStandalone:
    """Milvus standalone 2.3.5 with its data, logs and binaries under `base_dir`.

    `start()` waits until it is healthy (at most 3 minutes) and returns the URI; `stop()` ends it by
    its process id (it starts no other process). `settings` override milvus.yaml keys
    ({"dataCoord.segment.maxSize": 1024}): Milvus reads each from the environment variable named by
    the key in capitals with "_" for "." (DATACOORD_SEGMENT_MAXSIZE)."""

    def __init__(self, base_dir: Path, settings: dict[str, object] | None = None):
        from milvus import MilvusServer, MilvusServerConfig

        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config = MilvusServerConfig(data_dir=str(self.base_dir))
        config.update(**{key: free_port() for key in config.configurable_items if key.endswith("_port")})
        self.server = MilvusServer(config)
        self.server.webservice_port = free_port()  # metrics and /healthz (9091 by default)
        self.etcd_config = self.base_dir / "etcd.yaml"
        _write_etcd_config(self.etcd_config, config.configs["etcd_port"])
        self.environment = {"ETCD_CONFIG_PATH": str(self.etcd_config),
                            **{key.upper().replace(".", "_"): str(value) for key, value in (settings or {}).items()}}

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.listen_port}"

    @property
    def pid(self) -> int | None:
        return self.server.server_proc.pid if self.server.server_proc else None

    def start(self) -> str:
        # The package's server copies os.environ into the child when it starts.
        with mock.patch.dict(os.environ, self.environment):
            self.server.start()
        return self.uri

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a second, to this server's process only."""
        self.server.stop()

    @property
    def log(self) -> str:
        logs = self.base_dir / "logs"
        return "".join(p.read_text(errors="replace")[-2000:] for p in sorted(logs.glob("milvus-std*.log")))


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server not listening on {port} after {STARTUP_SECONDS} s: {log.read_text()[-2000:]}")


def start_milvus_lite_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """`milvus-lite server` on a free local port: a milvus-lite database shared by processes.
    Returns (process, uri); the caller terminates the process."""
    port = free_port()
    log = data_dir.with_suffix(".log")
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir),
                                    "--host", "127.0.0.1", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, process, log)
    return process, f"http://127.0.0.1:{port}"


def server_database(server: str, name: str) -> str:
    """A new, empty database on a Milvus server: `http://host:port/<name>` opens it."""
    from pymilvus import MilvusClient

    MilvusClient(server).create_database(name)
    return f"{server}/{name}"


def drop_database(uri: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    for name in client.list_collections():
        client.drop_collection(name)  # and its aliases
    server, name = uri.rsplit("/", 1)
    MilvusClient(server).drop_database(name)

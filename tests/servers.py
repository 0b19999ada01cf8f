"""Local servers for tests: free ports, and a Milvus server (milvus-lite's own server mode)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_milvus_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """`milvus-lite server` on a free local port: the gRPC API a Milvus deployment serves.
    Returns (process, uri); the caller terminates the process."""
    port = free_port()
    log = data_dir.with_suffix(".log")
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir),
                                    "--host", "127.0.0.1", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, process, log)
    return process, f"http://127.0.0.1:{port}"

"""Jobs started as subprocesses: wait for a condition, find every process a job started, kill them all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def wait_for(predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("condition not reached")


def _parent_pids() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit():
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    return parents


def job_processes(process: subprocess.Popen) -> set[int]:
    """The job's process group and every descendant (Ray starts its workers in groups of their own)."""
    parents = _parent_pids()
    found = {pid for pid in parents if _group(pid) == process.pid}
    while True:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        if not more:
            return found
        found |= more


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def kill_group(process: subprocess.Popen) -> None:
    """Stop everything the job started, by process id (never `ray stop`: other Rays may be running).
    The job's own group dies first, at once: a job that saw one of its Ray workers die before it
    would exit on its own, and a test that kills it mid-run would see another exit."""
    others = job_processes(process)
    for kill, target in [(os.killpg, process.pid), *((os.kill, pid) for pid in others)]:
        try:
            kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)

"""A process's resident memory, as the kernel counts it (/proc/PID/status), while it runs."""

from __future__ import annotations

from pathlib import Path


def status_mb(field: str, pid: int | str = "self") -> float:
    """A memory field of process `pid`'s status in MB; 0 when it has just ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith(f"{field}:")), 0.0)


def peak_rss_mb(pid: int | str = "self") -> float:
    """The peak resident memory (VmHWM)."""
    return status_mb("VmHWM", pid)


def shared_rss_mb(pid: int | str = "self") -> float:
    """Resident shared memory now (RssShmem): Ray's object store, mapped into its clients, counts here."""
    return status_mb("RssShmem", pid)

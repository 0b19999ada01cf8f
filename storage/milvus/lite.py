"""Embedded milvus-lite: how vidx opens a database directory, and the setting it loads with."""

from __future__ import annotations

import logging
import os

from pymilvus import MilvusClient

from .errors import VectorStoreError

# Bytes milvus-lite holds in its memtable before writing a data file (its default: 128 MB). Its
# flush turns every cell into a Python object first, ~10x the bytes: a quarter of the default took
# a 10^5 x 1024 load's peak from 2.8 GB to 1.9 GB at the same speed, and less gained nothing
# (docs/benchmarks.md, "The embedded default"). milvus-lite reads it once, when first imported.
LITE_MEMTABLE_BYTES = 32 << 20
os.environ.setdefault("MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES", str(LITE_MEMTABLE_BYTES))


class _ExceptionsLogged(logging.Handler):
    """Keeps the exceptions a logger reports, instead of printing their tracebacks."""

    def __init__(self):
        super().__init__()
        self.exceptions: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.exceptions.append(record.exc_info[1])


def open_lite(uri: str, grpc_options: dict) -> MilvusClient:
    """milvus-lite logs why it cannot open a database (a traceback) and then raises a bare "Open
    local milvus failed": turn that into one line that names the reason and the way out."""
    logged, log = _ExceptionsLogged(), logging.getLogger("milvus_lite.server_manager")
    log.addHandler(logged)
    log.propagate = False
    try:
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)  # as any tool writing a file would
        return MilvusClient(uri, grpc_options=grpc_options)
    except Exception as e:
        reason = str(logged.exceptions[-1]) if logged.exceptions else str(e)
        if "holds the lock" in reason:
            reason += (" (one process owns a milvus-lite database: to serve while a job loads, run "
                       f"`milvus-lite server --data-dir {uri}` and give both --db http://127.0.0.1:19530)")
        raise VectorStoreError(f"cannot open vector database {uri}: {reason}") from e
    finally:
        log.removeHandler(logged)
        log.propagate = True

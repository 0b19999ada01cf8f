"""The vector database: versioned Milvus collections behind an alias, milvus-lite or a server.

`--db ./vidx.db` opens a milvus-lite directory; `--db http://host:19530` a Milvus server; both go
through the same MilvusClient calls. A load builds `<alias>_<version>`, validates it, then moves
the alias, so readers only ever see a complete collection.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pymilvus import DataType, MilvusClient

logger = logging.getLogger(__name__)

# Rows per insert call: 256 rows x 1024 float32 = 1 MiB, far under Milvus' 64 MiB request limit
# even with wide metadata.
INSERT_BATCH = 256
# Longest VARCHAR Milvus accepts.
MAX_VARCHAR = 65_535
# Collection properties: the model that made the vectors; the version served before this one (the
# chain retention walks, so a version never served is never kept); a digest of what was loaded
# (an unchanged night loads nothing).
MODEL_PROPERTY = "vidx.model"
PREVIOUS_PROPERTY = "vidx.previous"
DIGEST_PROPERTY = "vidx.digest"
# HNSW on inner product: the vectors are unit length, so IP ranks as the paper's score.
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
# pymilvus pings every 10 s even when idle; milvus-lite's gRPC server (embedded or `milvus-lite
# server`) keeps gRPC's defaults (no pings without a call, at most one per 5 min), answers the third
# early ping with GOAWAY "too many pings", and the client cannot reconnect: an idle `vidx serve`
# broke after ~30 s (2 of 6 runs). Ping only during calls, every 5 min: every server accepts that.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": 0}


class VectorStoreError(RuntimeError):
    """The database cannot do what was asked; the message says why."""


class _ExceptionsLogged(logging.Handler):
    """Keeps the exceptions a logger reports, instead of printing their tracebacks."""

    def __init__(self):
        super().__init__()
        self.exceptions: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.exceptions.append(record.exc_info[1])


def _open_lite(uri: str) -> MilvusClient:
    """milvus-lite logs why it cannot open a database (a traceback) and then raises a bare "Open
    local milvus failed": turn that into one line that names the reason and the way out."""
    logged, log = _ExceptionsLogged(), logging.getLogger("milvus_lite.server_manager")
    log.addHandler(logged)
    log.propagate = False
    try:
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)  # as any tool writing a file would
        return MilvusClient(uri, grpc_options=GRPC_OPTIONS)
    except Exception as e:
        reason = str(logged.exceptions[-1]) if logged.exceptions else str(e)
        if "holds the lock" in reason:
            reason += (" (one process owns a milvus-lite database: to serve while a job loads, run "
                       f"`milvus-lite server --data-dir {uri}` and give both --db http://127.0.0.1:19530)")
        raise VectorStoreError(f"cannot open vector database {uri}: {reason}") from e
    finally:
        log.removeHandler(logged)
        log.propagate = True


def _milvus_type(arrow_type: pa.DataType) -> dict | None:
    """Milvus field arguments for an Arrow column; None for types Milvus cannot filter on."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return {"datatype": DataType.VARCHAR, "max_length": MAX_VARCHAR}
    if pa.types.is_boolean(arrow_type):
        return {"datatype": DataType.BOOL}
    if pa.types.is_integer(arrow_type):
        return {"datatype": DataType.INT64}
    if pa.types.is_floating(arrow_type):
        return {"datatype": DataType.DOUBLE}
    return None


def collection_fields(schema: pa.Schema, key: str) -> list[tuple[str, dict]]:
    """(name, Milvus field arguments) for every scalar column; the vector comes separately."""
    fields = []
    for field in schema:
        if field.name in (key, "embedding"):
            continue
        args = _milvus_type(field.type)
        if args is None:
            logger.warning("column %r (%s) is not stored in Milvus: no filterable type", field.name, field.type)
            continue
        fields.append((field.name, args))
    return fields


def _rows(table: pa.Table, names: list[str]) -> Iterator[list[dict]]:
    for start in range(0, table.num_rows, INSERT_BATCH):
        chunk = table.slice(start, INSERT_BATCH).select(names)
        rows = chunk.to_pylist()
        vectors = np.stack(chunk["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
        for row, vector in zip(rows, vectors):
            row["embedding"] = vector
        yield rows


class VectorStore:
    """One Milvus database: build, validate and swap collection versions; search them."""

    def __init__(self, uri: str):
        self.uri = uri
        if uri.startswith(("http://", "https://", "tcp://")):
            try:
                self.client = MilvusClient(uri, grpc_options=GRPC_OPTIONS)
            except Exception as e:  # the client raises many types for an unreachable or refusing server
                raise VectorStoreError(f"cannot open vector database {uri}: {e}") from e
        else:
            # milvus-lite's in-process gRPC server logs a traceback for every RPC it lacks
            # (AllocTimestamp, which pymilvus calls while waiting for an index); the client copes.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            self.client = _open_lite(uri)
        self._loaded_names: set[str] = set()

    def build_version(self, name: str, table: pa.Table, key: str, properties: dict[str, str]) -> None:
        """Create collection `name` from `table` (key, scalar columns, embedding) and index it."""
        dim = table.schema.field("embedding").type.list_size
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(key, DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
        fields = collection_fields(table.schema, key)
        for field_name, args in fields:
            schema.add_field(field_name, nullable=True, **args)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index("embedding", index_type="HNSW", metric_type="IP", params=HNSW_PARAMS)
        if self.client.has_collection(name):
            self.drop(name)  # a half-built version of an interrupted load
        self.client.create_collection(name, schema=schema, index_params=index,
                                      properties=properties)
        inserted, reported = 0, 0.0
        for rows in _rows(table, [key, *[f for f, _ in fields], "embedding"]):
            self.client.insert(name, rows)
            inserted += len(rows)
            if inserted / table.num_rows >= reported + 0.1 or inserted == table.num_rows:
                reported = inserted / table.num_rows
                logger.info("%s: %d/%d rows inserted", name, inserted, table.num_rows)
        self.client.flush(name)  # until flushed, milvus-lite searches take seconds

    def _loaded(self, name: str) -> str:
        """`name`, loaded: a process that did not build a collection finds it released."""
        if name not in self._loaded_names:
            self.client.load_collection(name)
            self._loaded_names.add(name)
        return name

    def query(self, name: str, filter: str, output_fields: list[str], **page) -> list[dict]:
        """Rows of collection `name` matching `filter`; `page` may give limit and offset."""
        return self.client.query(self._loaded(name), filter=filter, output_fields=output_fields, **page)

    def _description(self, alias: str) -> dict | None:
        # has_collection first: describe_collection logs a traceback for a missing name.
        return self.client.describe_collection(alias) if self.client.has_collection(alias) else None

    def fields(self, alias: str) -> set[str]:
        """Scalar field names of the collection behind `alias`; empty when there is none."""
        description = self._description(alias)
        if description is None:
            return set()
        return {f["name"] for f in description["fields"] if f["name"] != "embedding"}

    def count(self, name: str) -> int:
        return int(self.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def vectors(self, name: str, key: str, keys: list[str]) -> dict[str, np.ndarray]:
        quoted = ", ".join(json.dumps(k) for k in keys)
        rows = self.query(name, filter=f"{key} in [{quoted}]", output_fields=[key, "embedding"])
        return {row[key]: np.asarray(row["embedding"], np.float32) for row in rows}

    def alias_target(self, alias: str) -> str | None:
        # list_aliases, not describe_alias: that one logs an error with a traceback when missing.
        for name in self.client.list_collections():
            if alias in self.client.list_aliases(name)["aliases"]:
                return name
        return None

    def swap_alias(self, alias: str, name: str) -> None:
        """Point `alias` at `name` in one step; readers see the old or the new version, never none."""
        if self.alias_target(alias) is None:
            self.client.create_alias(name, alias)
        else:
            self.client.alter_alias(name, alias)

    def _existing(self, alias: str) -> dict:
        description = self._description(alias)
        if description is None:
            raise VectorStoreError(f"no collection {alias!r} in {self.uri}; run `vidx load` first")
        return description

    def resolve(self, alias: str) -> str:
        """The collection `alias` names now. Resolve once per request and use the name throughout,
        so the model, the filter columns and the search all see the same version across a swap."""
        return self._existing(alias)["collection_name"]

    def properties(self, name: str) -> dict[str, str]:
        description = self._description(name)
        return description.get("properties", {}) if description else {}

    def model_record(self, name: str) -> dict:
        """The model spec and fingerprint recorded by the load that built `name` (or an alias' target)."""
        return json.loads(self._existing(name).get("properties", {})[MODEL_PROPERTY])

    def retire_versions(self, alias: str, keep: int) -> list[str]:
        """Drop every version of `alias` but the served one and the keep-1 served before it; the
        leftovers of interrupted or failed loads were never served, so they always go."""
        kept, name = [], self.alias_target(alias)
        while name and len(kept) < keep and self.client.has_collection(name):
            kept.append(name)
            name = self.properties(name).get(PREVIOUS_PROPERTY)
        retired = [name for name in self.versions(alias) if name not in kept]
        for name in retired:
            self.drop(name)
        return retired

    def search(self, name: str, vector: np.ndarray, k: int, filter: str = "",
               output_fields: list[str] | None = None, ef: int | None = None) -> list[dict]:
        """Top-k of collection `name` by inner product: [{key fields..., "score"}], best first."""
        hits = self.client.search(self._loaded(name), data=[np.asarray(vector, np.float32)], limit=k, filter=filter,
                                  output_fields=output_fields or ["*"],
                                  search_params={"metric_type": "IP", "params": {"ef": max(ef or 0, 2 * k, 64)}})
        return [{**hit["entity"], "score": float(hit["distance"])} for hit in hits[0]]

    def versions(self, alias: str) -> list[str]:
        return sorted(n for n in self.client.list_collections() if n.startswith(f"{alias}_"))

    def drop(self, name: str) -> None:
        self.client.drop_collection(name)
        self._loaded_names.discard(name)

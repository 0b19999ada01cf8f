"""The vector database: Milvus collections, aliases, properties and search, milvus-lite or a server.

`--db ./vidx.db` opens a milvus-lite directory; `--db http://host:19530` a Milvus server; both go
through the same MilvusClient calls, and only what both do is relied on. The versions behind an
alias, and how a load builds, validates and swaps them, are storage/collections.py.
"""

from __future__ import annotations

import json
import logging
import os
import re

import numpy as np
import pyarrow as pa
from pymilvus import DataType, MilvusClient
from pymilvus.client import entity_helper
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from .exact import CopyWriter, ExactCopy, copy_path, remove_copy, vectors_path

logger = logging.getLogger(__name__)

# Longest VARCHAR Milvus accepts.
MAX_VARCHAR = 65_535
# The model that made a collection's vectors (JSON): queries load it and refuse a mismatch.
MODEL_PROPERTY = "vidx.model"
# HNSW on inner product: the vectors are unit length, so IP ranks as the paper's score. The build
# cost grows with efConstruction: on 100k clustered 1024-d vectors (faiss, this busy 2-core machine)
# 64 built in 128 s where 200 took 1,210 s, and still finds 0.99 of the exact top-10 at ef 64.
HNSW_PARAMS = {"M": 16, "efConstruction": 64}
# The least HNSW search breadth (ef, the candidates kept per segment). 1M clustered 1024-d vectors
# in five ~220k-row segments of a Milvus 2.3.5 server, recall@10 against exact search at ef 64 / 96
# / 128 / 192: 0.91 / 0.94 / 0.97 / 0.98, p50 8.8 / 8.5 / 9.0 / 10.5 ms (a search costs about the
# same up to 128); at 100k in one segment ef 64 already finds 0.99.
SEARCH_EF = 128
# Nullable fields came in Milvus 2.5; milvus-lite 3 has them.
NULLABLE_SINCE = (2, 5)
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


# Embedded milvus-lite: one process owns the database (milvus-lite locks it) and every alias change
# made in that process goes through VectorStore.swap_alias and drop, so the collection each alias
# names is remembered per database for the process. A search then resolves its alias without two
# RPCs (~1-2 ms each, beside ~20 ms for the product over 100k vectors). Servers are always asked.
_LITE_TARGETS: dict[str, dict[str, str]] = {}


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


def _version(text: str) -> tuple[int, ...]:
    """(2, 3, 5) from "v2.3.5-lite" (a server) or "milvus_lite-3.2.2" (milvus-lite)."""
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(part) for part in found.groups()) if found else (0, 0, 0)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _fill_float_vectors(field: schema_pb2.FieldData, name: str, column: pa.ChunkedArray) -> None:
    """Fill `field` with a fixed_size_list<float32>[D] column as Milvus' FLOAT_VECTOR field data.

    FloatArray is `repeated float data = 1`, packed: tag 0x0A, the byte length, the little-endian
    floats. The floats are copied once into that encoding and parsed once, where pymilvus' packing
    boxes every float in Python (1-2 s for a 4,000 x 1024 batch through MilvusClient.insert). `field`
    is filled where it lies in its request: appending a finished message copies it again."""
    dim, rows = column.type.list_size, len(column)
    header = b"\x0a" + _varint(4 * dim * rows)
    encoded = bytearray(len(header) + 4 * dim * rows)
    encoded[:len(header)] = header
    np.concatenate([chunk.flatten().to_numpy() for chunk in column.chunks],
                   out=np.frombuffer(encoded, "<f4", offset=len(header)))
    field.field_name, field.type = name, DataType.FLOAT_VECTOR
    field.vectors.dim = dim
    field.vectors.float_vector.ParseFromString(encoded)


class VectorStore:
    """One Milvus database (milvus-lite or a server): collections, aliases, properties, search."""

    def __init__(self, uri: str):
        self.uri = uri
        self.embedded = not uri.startswith(("http://", "https://", "tcp://"))  # a milvus-lite directory
        if self.embedded:
            # milvus-lite's in-process gRPC server logs a traceback for every RPC it lacks
            # (AllocTimestamp, which pymilvus calls while waiting for an index); the client copes.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            self.client = _open_lite(uri)
        else:
            try:
                self.client = MilvusClient(uri, grpc_options=GRPC_OPTIONS)
            except Exception as e:  # the client raises many types for an unreachable or refusing server
                raise VectorStoreError(f"cannot open vector database {uri}: {e}") from e
        reported = self.client.get_server_version()
        self.is_lite = reported.startswith("milvus_lite")  # embedded or `milvus-lite server`
        self.version = _version(reported)
        self._loaded_names: set[str] = set()
        # Embedded milvus-lite only: Arrow copies being written by a load, and opened ones (storage/exact.py).
        self._copy_writers: dict[str, CopyWriter] = {}
        self._copies: dict[str, ExactCopy | None] = {}

    @property
    def engine(self) -> str:
        return f"{'milvus-lite' if self.is_lite else 'Milvus'} {'.'.join(map(str, self.version))}"

    @property
    def nullable(self) -> bool:
        """Whether a field may hold nulls (a server before 2.5 rejects a null at insert)."""
        return self.is_lite or self.version[:2] >= NULLABLE_SINCE

    def has(self, name: str) -> bool:
        return self.client.has_collection(name)

    def create_collection(self, name: str, key: str, fields: list[tuple[str, dict]], dim: int,
                          properties: dict[str, str]) -> None:
        """An empty collection: `key` (VARCHAR primary key), `fields`, `embedding` (float32[dim])."""
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(key, DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
        for field_name, args in fields:
            schema.add_field(field_name, nullable=self.nullable, **args)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
        self.client.create_collection(name, schema=schema, properties=properties)
        if self.embedded:
            self._copy_writers[name] = CopyWriter(copy_path(self.uri, name))

    def insert(self, name: str, rows: pa.Table) -> None:
        """Insert rows (the collection's fields and `embedding`), column by column; the caller sizes
        the batch. Scalars are packed by pymilvus, the vectors by _fill_float_vectors."""
        description = self.client.describe_collection(name)
        fields = {field["name"]: field for field in description["fields"]}
        request = milvus_pb2.InsertRequest(collection_name=name, num_rows=rows.num_rows)
        for column in rows.column_names:
            if column == "embedding":
                _fill_float_vectors(request.fields_data.add(), column, rows[column])
            else:
                values = {"name": column, "type": fields[column]["type"], "values": rows[column].to_pylist()}
                request.fields_data.append(entity_helper.entity_to_field_data(values, fields[column], rows.num_rows))
        # MilvusClient inserts only rows; its connection takes a prepared columnar request (pymilvus
        # is pinned: these two private calls are what MilvusClient.insert itself makes).
        self.client._get_connection().batch_insert(name, [], insert_param=request, schema=description,
                                                   context=self.client._generate_call_context())
        if name in self._copy_writers:
            self._copy_writers[name].write(rows)

    def seal(self, name: str) -> None:
        """Make inserted rows searchable fast: flush them, build the index (waiting for it), load."""
        self.client.flush(name)  # until flushed, milvus-lite searches take seconds
        index = self.client.prepare_index_params()
        index.add_index("embedding", index_type="HNSW", metric_type="IP", params=HNSW_PARAMS)
        logger.info("%s: building the index", name)
        self.client.create_index(name, index)  # returns when the index of every flushed row is built
        self._loaded(name)
        if name in self._copy_writers:
            self._copy_writers.pop(name).close()

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
        """Rows in collection `name`, counting every insert acknowledged before the call."""
        rows = self.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def vectors(self, name: str, key: str, keys: list[str]) -> dict[str, np.ndarray]:
        quoted = ", ".join(json.dumps(k) for k in keys)
        rows = self.query(name, filter=f"{key} in [{quoted}]", output_fields=[key, "embedding"])
        return {row[key]: np.asarray(row["embedding"], np.float32) for row in rows}

    def _target(self, alias: str) -> str | None:
        """The collection `alias` names (`alias` itself when it is a collection); None when none."""
        known = _LITE_TARGETS.setdefault(os.path.abspath(self.uri), {}) if self.embedded else {}
        if alias not in known:
            description = self._description(alias)
            if description is None:
                return None
            known[alias] = description["collection_name"]
        return known[alias]

    def alias_target(self, alias: str) -> str | None:
        """The collection `alias` names; None when it names none. Through describe_collection: Milvus
        2.3 answers list_aliases and describe_alias for the default database only."""
        target = self._target(alias)
        return None if target == alias else target

    def swap_alias(self, alias: str, name: str) -> None:
        """Point `alias` at `name` in one step; readers see the old or the new version, never none."""
        if self.alias_target(alias) is None:
            self.client.create_alias(name, alias)
        else:
            self.client.alter_alias(name, alias)
        if self.embedded:
            _LITE_TARGETS[os.path.abspath(self.uri)][alias] = name

    def _missing(self, alias: str) -> VectorStoreError:
        return VectorStoreError(f"no collection {alias!r} in {self.uri}; run `vidx load` first")

    def _existing(self, alias: str) -> dict:
        description = self._description(alias)
        if description is None:
            raise self._missing(alias)
        return description

    def resolve(self, alias: str) -> str:
        """The collection `alias` names now. Resolve once per request and use the name throughout,
        so the model, the filter columns and the search all see the same version across a swap."""
        target = self._target(alias)
        if target is None:
            raise self._missing(alias)
        return target

    def properties(self, name: str) -> dict[str, str]:
        description = self._description(name)
        return description.get("properties", {}) if description else {}

    def model_record(self, name: str) -> dict:
        """The model spec and fingerprint recorded by the load that built `name` (or an alias' target)."""
        return json.loads(self._existing(name).get("properties", {})[MODEL_PROPERTY])

    def search(self, name: str, vector: np.ndarray, k: int, filter: str = "",
               output_fields: list[str] | None = None, ef: int | None = None) -> list[dict]:
        """Top-k of collection `name` by inner product: [{key fields..., "score"}], best first. On
        milvus-lite without a filter, exact search over the collection's Arrow copy (storage/exact.py)."""
        copy = None if not self.embedded or filter else self._copy(self._target(name) or name)
        if copy is not None:
            return copy.search(vector, k, output_fields or ["*"])
        hits = self.client.search(self._loaded(name), data=[np.asarray(vector, np.float32)], limit=k, filter=filter,
                                  output_fields=output_fields or ["*"],
                                  search_params={"metric_type": "IP", "params": {"ef": max(ef or 0, 2 * k, SEARCH_EF)}})
        return [{**hit["entity"], "score": float(hit["distance"])} for hit in hits[0]]

    def versions(self, alias: str) -> list[str]:
        return sorted(n for n in self.client.list_collections() if n.startswith(f"{alias}_"))

    def _copy(self, name: str) -> ExactCopy | None:
        if name not in self._copies:
            path = copy_path(self.uri, name)
            # None: loaded by a vidx that wrote no copy, or one copy file (vectors inside the Arrow file)
            complete = path.exists() and vectors_path(path).exists()
            self._copies[name] = ExactCopy(path) if complete else None
        return self._copies[name]

    def drop(self, name: str) -> None:
        self.client.drop_collection(name)
        self._loaded_names.discard(name)
        self._copies.pop(name, None)
        if name in self._copy_writers:
            self._copy_writers.pop(name).discard()
        if self.embedded:
            remove_copy(copy_path(self.uri, name))
            targets = _LITE_TARGETS.get(os.path.abspath(self.uri), {})
            for alias in [a for a, target in targets.items() if name in (a, target)]:
                del targets[alias]

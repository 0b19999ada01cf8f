"""The vector database: Milvus collections, aliases, properties and search, milvus-lite or a server.

`--db ./vidx.db` opens a milvus-lite directory; `--db http://host:19530` a Milvus server; both go
through the same MilvusClient calls, and only what both do is relied on. The versions behind an
alias, and how a load builds, validates and swaps them, are storage/milvus/versions.py; which
questions go to Milvus and which to a collection's exact copy is the query engine's to say
(storage/query).

A request the database refuses (a filter it cannot evaluate) is a VectorStoreError (bad input);
a database that cannot be reached or fails is Unavailable (storage/milvus/errors.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from errors import Unavailable

from storage.schema import EMBEDDING, MODEL_KEY, ROW_VERSION, SCORE, is_version_of

from .errors import RowStream, VectorStoreError, database_errors, reason, unreachable
from .exact_copy import (ExactCopy, ExactCopyWriter, exact_copy_path, night_path, remove_exact_copy, vectors_path,
                         write_empty_night, write_superseded)
from .fields import MAX_VARCHAR, scalar_schema
from .filters import is_in
from .insert_request import delete_where, insert_columns
from .lite import open_lite
from .lite_partitions import FilledPartitions
from .nights import FIRST_NIGHT
from .recorded_description import description_path, record_description, recorded_description
from .scores import ScoreRange

logger = logging.getLogger(__name__)

SERVER_SCHEMES = ("http://", "https://", "tcp://")
# HNSW on inner product: the vectors are unit length, so IP ranks as the paper's score. The build
# cost grows with efConstruction: 64 builds far faster than 200 and still finds nearly all
# of the exact top-10 at ef 64 (docs/benchmarks.md, "Why the constants are what they are").
HNSW_PARAMS = {"M": 16, "efConstruction": 64}
# The least HNSW search breadth (ef, the candidates kept per segment). In a server's ~220k-row
# segments recall@10 climbs with ef up to 128 at about the same search time, and gains little beyond
# (docs/benchmarks.md, "Server settings": the search breadth table); one segment of 100k rows needs
# less (docs/benchmarks.md, "Why the constants are what they are").
SEARCH_EF = 128
# A range search returns at most Milvus' largest limit (topk); its bounds are widened by the margin
# (Milvus' radius is exclusive, and its scores are float32), and the exact comparison comes after.
RANGE_LIMIT = 16_384
RANGE_MARGIN = 1e-6
MAX_INNER_PRODUCT = 1e6  # no upper bound: unit vectors score at most 1
# A scan's batch: 4,000 rows of 1024-d vectors arrive as ~16 MB (gRPC takes 64 MB a message); a
# column scan ran faster in batches of 4,000 than of 1,000 (docs/benchmarks.md, "Why the constants
# are what they are").
SCAN_BATCH = 4000
# A read's `as_of` that sees every write acknowledged before it (Milvus' Strong consistency).
LATEST = -1
# Nullable fields came in Milvus 2.5; milvus-lite 3 has them.
NULLABLE_SINCE = (2, 5)
# pymilvus pings every 10 s even when idle; milvus-lite's gRPC server (embedded or `milvus-lite
# server`) keeps gRPC's defaults (no pings without a call, at most one per 5 min), answers the third
# early ping with GOAWAY "too many pings", and the client cannot reconnect: an idle `vidx serve`
# broke (docs/benchmarks.md, "Why the constants are what they are"). Ping only during calls, every
# 5 min: every server accepts that.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": 0}


def is_server(uri: str) -> bool:
    """A Milvus server's address, not a milvus-lite directory."""
    return uri.startswith(SERVER_SCHEMES)


def _version(text: str) -> tuple[int, ...]:
    """(2, 3, 5) from "v2.3.5-lite" (a server) or "milvus_lite-3.2.2" (milvus-lite)."""
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(part) for part in found.groups()) if found else (0, 0, 0)


class VectorStore:
    """One Milvus database (milvus-lite or a server): collections, aliases, properties, search; on
    milvus-lite, the exact copies of its collections too. A context manager: closing it closes the
    client and lets the copies go."""

    def __init__(self, uri: str, create: bool = True, timeout: float | None = None):
        """Open the database at `uri`. With `create` False (commands that only read), a milvus-lite
        path where no database exists is refused rather than made. `timeout`: seconds a read
        (search, query, scan, describe) may wait for an answer before it fails (default: no limit;
        a server sets one, so a database gone silent fails its requests instead of holding them)."""
        self.uri, self.timeout = uri, timeout
        self.embedded = not is_server(uri)  # a milvus-lite directory
        # pymilvus logs every call that fails with its traceback; vidx reports each in one line
        # (storage/milvus/errors.py), and a name that is not there is no failure (describe).
        logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
        # Milvus 2.3 and milvus-lite do not say a query's MVCC timestamp; pymilvus' query iterator
        # then takes the client's clock (as good here) and warns on every scan.
        logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
        if self.embedded and not create and not os.path.isdir(uri):
            raise VectorStoreError(f"no vector database at {uri}: give the --db of a `vidx load`, or a Milvus "
                                   "server's http://host:19530")
        if self.embedded:
            # milvus-lite's in-process gRPC server logs a traceback for every RPC it lacks
            # (AllocTimestamp, which pymilvus calls while waiting for an index); the client copes.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            self.client = open_lite(uri, GRPC_OPTIONS)
        else:
            try:
                self.client = MilvusClient(uri, grpc_options=GRPC_OPTIONS)
            except Exception as e:  # the client raises many types for an unreachable or refusing server
                raise Unavailable(f"cannot open vector database {uri}: {reason(e)}") from e
        reported = self.client.get_server_version(timeout=timeout)
        self.is_lite = reported.startswith("milvus_lite")  # embedded or `milvus-lite server`
        self.server_version = _version(reported)
        self._in_memory: set[str] = set()  # collections this process has had Milvus load into memory
        # Embedded milvus-lite only: the exact copies opened, each read once however many threads ask.
        self._copies: dict[str, tuple[int | None, ExactCopy | None]] = {}  # name -> (night, its copy)
        self._copies_lock = threading.Lock()
        self._partitions = FilledPartitions(self.client) if self.is_lite else None

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        self._copies.clear()
        self.client.close()

    @property
    def engine(self) -> str:
        return f"{'milvus-lite' if self.is_lite else 'Milvus'} {'.'.join(map(str, self.server_version))}"

    @property
    def nullable(self) -> bool:
        """Whether a field may hold nulls (a server before 2.5 rejects a null at insert)."""
        return self.is_lite or self.server_version[:2] >= NULLABLE_SINCE

    @database_errors()
    def has(self, name: str) -> bool:
        return self.client.has_collection(name, timeout=self.timeout)

    @database_errors()
    def create_collection(self, name: str, primary: str, fields: list[tuple[str, dict]], dim: int,
                          properties: dict[str, str]) -> None:
        """An empty collection: `primary` (VARCHAR primary key), `fields`, `embedding` (float32[dim])."""
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(primary, DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
        for field_name, args in fields:
            schema.add_field(field_name, nullable=self.nullable, **args)
        schema.add_field(EMBEDDING, DataType.FLOAT_VECTOR, dim=dim)
        if self._partitions:
            self._partitions.forget(name)
        self.client.create_collection(name, schema=schema, properties=properties)
        self._record_description(name)

    def exact_copy_writer(self, name: str, night: int = FIRST_NIGHT) -> ExactCopyWriter | None:
        """Where a load writes the exact copy of collection `name` as it inserts (milvus-lite only):
        the rows of its first night, or of a later `night`."""
        return ExactCopyWriter(night_path(exact_copy_path(self.uri, name), night)) if self.embedded else None

    def copy_night(self, name: str, night: int, superseded: pa.Array, wrote_rows: bool) -> None:
        """Finish night `night` of the exact copy of `name` (milvus-lite only): the row versions it
        superseded, and its rows' files when it wrote none."""
        if self.embedded:
            path = exact_copy_path(self.uri, name)
            if not wrote_rows:
                write_empty_night(path, night)
            write_superseded(path, night, superseded)

    @database_errors()
    def insert(self, name: str, rows: pa.Table) -> None:
        """Insert rows (the collection's fields and `embedding`), column by column, as one request
        (storage/milvus/insert_request.py); the caller sizes the batch. On milvus-lite, into the
        partition being filled (lite_partitions.py)."""
        insert_columns(self.client, name, rows, partition=self._partition_for(name, rows))

    @database_errors()
    def upsert(self, name: str, rows: pa.Table) -> int:
        """As insert, each row replacing the stored one of the same primary key; the write's timestamp."""
        return insert_columns(self.client, name, rows, upsert=True, partition=self._partition_for(name, rows))

    def _partition_for(self, name: str, rows: pa.Table) -> str:
        if self._partitions is None:
            return ""
        return self._partitions.for_rows(name, rows.num_rows, rows.schema.field(EMBEDDING).type.list_size)

    @database_errors()
    def delete(self, name: str, filter: str) -> int:
        """Delete the rows of collection `name` that `filter` keeps; the write's timestamp."""
        return delete_where(self.client, name, filter, self.timeout)

    @database_errors()
    def set_properties(self, name: str, properties: dict[str, str]) -> None:
        """Write `properties` of collection `name` in one call: a reader describing it sees all or none."""
        self.client.alter_collection_properties(name, properties, timeout=self.timeout)
        self._record_description(name)

    def _record_description(self, name: str) -> None:
        """On embedded milvus-lite, what it now describes of `name`, for processes that answer from
        the exact copy (recorded_description.py)."""
        if self.embedded:
            record_description(exact_copy_path(self.uri, name), self.client.describe_collection(name))

    @database_errors()
    def seal(self, name: str) -> None:
        """Make inserted rows searchable fast: flush them, build the index (waiting for it), bring it
        into memory. An embedded milvus-lite collection gets no index: every question is answered
        from its exact copy, and an HNSW nobody searches took two thirds of a load and a second copy
        of the vectors (docs/benchmarks.md, "The embedded default"); a pymilvus reader's
        search is then milvus-lite's exact scan, or one builds an index (create_index)."""
        self.client.flush(name)  # until flushed, milvus-lite searches take seconds
        if self.embedded:
            self._record_description(name)  # with the partitions its rows filled
            return
        index = self.client.prepare_index_params()
        index.add_index(EMBEDDING, index_type="HNSW", metric_type="IP", params=HNSW_PARAMS)
        logger.info("%s: building the index", name)
        self.client.create_index(name, index)  # returns when the index of every flushed row is built
        self._searchable(name)

    def _searchable(self, name: str) -> str:
        """`name`, in the database's memory (Milvus' load_collection): a process that did not build
        a collection finds it released."""
        if name not in self._in_memory:
            self.client.load_collection(name, timeout=self.timeout)
            self._in_memory.add(name)
        return name

    def _as_of(self, timestamp: int | None) -> dict:
        """A read's consistency: as of the Milvus `timestamp` (every write up to it seen), of every
        write acknowledged (LATEST), or the collection's own level (None: Bounded, a few seconds
        behind). milvus-lite sees every acknowledged write at once."""
        if timestamp is None or self.is_lite:
            return {}
        if timestamp == LATEST:
            return {"consistency_level": "Strong"}
        return {"consistency_level": "Customized", "guarantee_timestamp": timestamp}

    @database_errors(refused="Milvus refused the query")
    def query(self, name: str, filter: str, output_fields: list[str], as_of: int | None = None, **page) -> list[dict]:
        """Rows of collection `name` matching `filter` (as of the Milvus timestamp `as_of`, when
        given: see _as_of); `page` may give limit and offset."""
        return self.client.query(self._searchable(name), filter=filter, output_fields=output_fields,
                                 timeout=self.timeout, **self._as_of(as_of), **page)

    @database_errors()
    def describe(self, alias: str) -> dict | None:
        """Milvus' description of the collection behind `alias` (its name, fields, properties); None
        when there is none. One call: every question asks it, to see the version its alias names now.
        On embedded milvus-lite, the description vidx recorded when it has one: milvus-lite reads a
        collection's every row into memory to describe it (recorded_description.py)."""
        if self.embedded and (recorded := self._recorded_description(alias)) is not None:
            return recorded
        try:
            return self.client.describe_collection(alias, timeout=self.timeout)
        except MilvusException as e:
            if unreachable(e) or self.client.has_collection(alias, timeout=self.timeout):
                raise
            return None

    def _recorded_description(self, alias: str) -> dict | None:
        """The recorded description of the collection `alias` (or a collection's name) names now:
        the alias is resolved by milvus-lite, which reads its aliases without opening a collection
        (pymilvus' has_collection and list_collections open them)."""
        try:
            name = self.client.describe_alias(alias)["collection_name"]
        except MilvusException:
            name = alias  # a collection's own name
        return recorded_description(exact_copy_path(self.uri, name))

    def fields(self, alias: str) -> set[str]:
        """Scalar field names of the collection behind `alias`; empty when there is none."""
        description = self.describe(alias)
        return set(scalar_schema(description, None).names) if description else set()

    def count(self, name: str, filter: str = "") -> int:
        """Rows of collection `name` that `filter` keeps, counting every insert acknowledged before the call."""
        rows = self.query(name, filter=filter, output_fields=["count(*)"], as_of=LATEST)
        return int(rows[0]["count(*)"])

    @database_errors(refused="Milvus refused the query")
    def scan(self, name: str, filter: str, schema: pa.Schema, vector: np.ndarray | None = None,
             scores: ScoreRange = ScoreRange(), as_of: int | None = None, batch_size: int = SCAN_BATCH) -> RowStream:
        """Every row of collection `name` that `filter` keeps, streamed through a Milvus query
        iterator (memory bounded by a batch); with `vector`, each row with its score (inner
        product), kept when within `scores`; `schema`: the columns to read (scalar_schema). Exact, on any engine."""
        rows = self.client.query_iterator(self._searchable(name), batch_size=batch_size, filter=filter,
                                          output_fields=schema.names + ([EMBEDDING] if vector is not None else []),
                                          timeout=self.timeout, **self._as_of(as_of))

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                while batch := rows.next():
                    table = pa.Table.from_pylist(batch, schema=schema)
                    if vector is not None:
                        products = np.asarray([row[EMBEDDING] for row in batch], np.float32) @ vector
                        table = table.append_column(SCORE, pa.array(products.astype(np.float64)))
                        table = table.filter(scores.within(products))
                    yield from table.to_batches()
            finally:
                rows.close()
        scored = schema.append(pa.field(SCORE, pa.float64())) if vector is not None else schema
        return RowStream(scored, batches(), self.uri)

    def vectors(self, name: str, key: str, keys: list[str], among: str = "") -> dict[str, np.ndarray]:
        """The vectors of the rows whose `key` is one of `keys` (among those the filter `among` keeps)."""
        condition = f"({is_in(key, keys)}) and ({among})" if among else is_in(key, keys)
        rows = self.query(name, filter=condition, output_fields=[key, EMBEDDING], as_of=LATEST)
        return {row[key]: np.asarray(row[EMBEDDING], np.float32) for row in rows}

    def stored_versions(self, name: str, versions: list[str], fields: list[str]) -> dict[str, dict]:
        """The stored rows of these row versions (primary keys) of collection `name`, each with its
        `fields`: a lookup by primary key alone, which milvus-lite answers from its key index
        instead of evaluating a filter on every row (a 3 x 10^5-row collection: +1 GB for a moment)."""
        rows = self.query(name, filter=is_in(ROW_VERSION, versions), output_fields=fields, as_of=LATEST)
        return {row[ROW_VERSION]: row for row in rows}

    def alias_target(self, alias: str) -> str | None:
        """The collection `alias` names; None when it names none. Through describe_collection: Milvus
        2.3 answers list_aliases and describe_alias for the default database only. Asked every time:
        another process (or another client in this one) may swap it."""
        description = self.describe(alias)
        target = description["collection_name"] if description else None
        return None if target == alias else target

    @database_errors()
    def swap_alias(self, alias: str, name: str) -> None:
        """Point `alias` at `name` in one step; readers see the old or the new version, never none."""
        if self.alias_target(alias) is None:
            self.client.create_alias(name, alias)
        else:
            self.client.alter_alias(name, alias)

    def _missing(self, alias: str) -> VectorStoreError:
        return VectorStoreError(f"no collection {alias!r} in {self.uri}; run `vidx load` first")

    def described(self, alias: str) -> dict:
        """The description of the collection `alias` names now (see describe); refused when there is none."""
        description = self.describe(alias)
        if description is None:
            raise self._missing(alias)
        return description

    def resolve(self, alias: str) -> str:
        """The collection `alias` names now. Resolve once per request and use the name throughout,
        so the model, the filter columns and the search all see the same version across a swap."""
        return self.described(alias)["collection_name"]

    def properties(self, name: str) -> dict[str, str]:
        description = self.describe(name)
        return description.get("properties", {}) if description else {}

    def model_record(self, name: str) -> dict:
        """The model spec and fingerprint recorded by the load that built `name` (or an alias' target)."""
        return json.loads(self.described(name).get("properties", {})[MODEL_KEY])

    @database_errors(refused="Milvus refused the search")
    def search(self, name: str, vector: np.ndarray, k: int, filter: str = "",
               output_fields: list[str] | None = None, ef: int | None = None, as_of: int | None = None) -> list[dict]:
        """Milvus' top-k of collection `name` by inner product (HNSW): [{output fields..., "score"}], best first."""
        return self._search(name, vector, k, filter, output_fields, {"ef": max(ef or 0, 2 * k, SEARCH_EF)}, as_of)

    def _search(self, name: str, vector: np.ndarray, limit: int, filter: str, output_fields: list[str] | None,
                params: dict, as_of: int | None) -> list[dict]:
        hits = self.client.search(self._searchable(name), data=[np.asarray(vector, np.float32)], limit=limit,
                                  filter=filter, output_fields=output_fields or ["*"],
                                  search_params={"metric_type": "IP", "params": params}, timeout=self.timeout,
                                  **self._as_of(as_of))
        return [{**hit["entity"], SCORE: float(hit["distance"])} for hit in hits[0]]

    @database_errors(refused="Milvus refused the search")
    def range_search(self, name: str, vector: np.ndarray, scores: ScoreRange, filter: str = "",
                     output_fields: list[str] | None = None, as_of: int | None = None) -> list[dict] | None:
        """The rows of collection `name` whose inner product with `vector` lies within `scores` (a
        lower bound at least), best first: Milvus' range search (HNSW, searching as wide as it
        returns). None when RANGE_LIMIT rows or more qualify (Milvus returns no more)."""
        if scores.high is not None and scores.high < scores.low:
            return []  # Milvus refuses an empty range
        bounds = {"radius": scores.low - RANGE_MARGIN, "range_filter": (scores.high if scores.high is not None
                                                                         else MAX_INNER_PRODUCT) + RANGE_MARGIN}
        hits = self._search(name, vector, RANGE_LIMIT, filter, output_fields, {"ef": RANGE_LIMIT, **bounds}, as_of)
        return hits if len(hits) < RANGE_LIMIT else None

    @database_errors()
    def versions(self, alias: str) -> list[str]:
        return sorted(n for n in self.client.list_collections(timeout=self.timeout) if is_version_of(n, alias))

    def exact_copy(self, name: str, night: int | None = None) -> ExactCopy | None:
        """The exact copy of collection `name` (a collection, not an alias) as served at `night`
        (None: a collection without nights), on milvus-lite; None where there is none. Read once per
        night: threads asking at once wait for the first to read it; an earlier night's goes."""
        if not self.embedded:
            return None
        with self._copies_lock:
            if name not in self._copies or self._copies[name][0] != night:
                path = exact_copy_path(self.uri, name)
                # None: loaded by a vidx that wrote no copy, or one copy file (vectors inside the Arrow file)
                complete = path.exists() and vectors_path(path).exists()
                self._copies[name] = (night, ExactCopy(path, night) if complete else None)
            return self._copies[name][1]

    @database_errors()
    def drop(self, name: str) -> None:
        self.client.drop_collection(name)
        self._in_memory.discard(name)
        self._copies.pop(name, None)
        if self._partitions:
            self._partitions.forget(name)
        if self.embedded:
            remove_exact_copy(exact_copy_path(self.uri, name))
            description_path(exact_copy_path(self.uri, name)).unlink(missing_ok=True)

"""Versioned collections behind an alias: build a version from the live rows, validate it, swap the
alias to it, retire old versions; and what each version records in its `vidx.*` properties.

Readers resolve the alias per request, so they see the old version or the new one, never a
half-built one. Only what both engines do is relied on: the rows are de-duplicated here (a
server keeps duplicate primary keys where milvus-lite overwrites), properties are read back from
the collection, and a version is flushed, indexed and in memory before it is validated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from errors import IntegrityError

from storage.progress import Progress
from storage.table.digests import rows_digest
from storage.table.live_rows import LiveRows
from storage.table.tag_columns import TagColumns
from storage.schema import DIGEST_KEY, EMBEDDING, MODEL_KEY, NOT_SERVED, PREVIOUS_KEY, version_name
from .fields import collection_fields, text_list_field
from .store import VectorStore, VectorStoreError


logger = logging.getLogger(__name__)

# Vectors read back after a load and compared with the Parquet rows they came from.
VALIDATION_SAMPLE = 64
# Bytes of vectors per insert request (4,096 rows at 1024-d). Against Milvus 2.3.5 the insert rate
# peaked near 16 MB requests, a quarter of the server's 64 MB request limit (docs/benchmarks.md,
# "Why the constants are what they are").
INSERT_BYTES = 16 << 20
# Insert requests a server has at once: vidx packs the next while the server stores one, which
# inserted more rows/s than one in flight (docs/benchmarks.md, "Why the constants are what they
# are"; today's rate: "Inserts"). milvus-lite (Python, in one process or its server mode) takes one
# at a time, and its exact copy is written in order.
SERVER_INSERTS_IN_FLIGHT = 2


def served_fields(schema: pa.Schema, key: str) -> list[tuple[str, dict]]:
    return [(name, args) for name, args in collection_fields(schema, key) if name not in NOT_SERVED]


def null_counts(live: LiveRows, columns: list[str]) -> dict[str, int]:
    """Nulls per column among the live rows, for the columns that have any."""
    counts = dict.fromkeys(columns, 0)
    for batch in live.batches([live.key_column, *columns], 65_536):
        for column in columns:
            counts[column] += batch[column].null_count
    return {column: count for column, count in counts.items() if count}


def check_storable(store: VectorStore, live: LiveRows, fields: list[tuple[str, dict]]) -> None:
    """A server without nullable fields cannot hold a null: name the first column that has one."""
    if store.nullable:
        return
    for column, count in null_counts(live, [name for name, _ in fields]).items():
        raise VectorStoreError(
            f"column {column!r} is empty (null) in {count} of the {live.rows.num_rows} rows to serve, and "
            f"{store.engine} has no nullable fields (Milvus 2.5 and milvus-lite have): give every video a "
            f"{column} in the manifest, or serve from Milvus 2.5+ or milvus-lite")


def insert_batches(live: LiveRows, fields: list[tuple[str, dict]],
                   tags: TagColumns | None = None) -> Iterator[pa.Table]:
    """The live rows as insert requests: the key, the served `fields`, the `tags` columns and the
    vectors, INSERT_BYTES of vectors at a time."""
    dim = live.schema.field(EMBEDDING).type.list_size
    columns = [live.key_column, *[f for f, _ in fields], EMBEDDING]
    batches = live.batches(columns, max(1, INSERT_BYTES // (4 * dim)))
    if tags is None:
        return batches
    order = [live.key_column, *[f for f, _ in fields], *(f.name for f in tags.fields), EMBEDDING]
    return (tags.attach(batch).select(order) for batch in batches)


def inserted_batches(store: VectorStore, name: str, batches: Iterable[pa.Table], in_flight: int) -> Iterator[pa.Table]:
    """Insert each batch into `name`, up to `in_flight` requests at once; yields each batch once
    the server has acknowledged it."""
    with ThreadPoolExecutor(in_flight, thread_name_prefix="insert") as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append((pool.submit(store.insert, name, batch), batch))
            if len(pending) == in_flight:
                request, done = pending.popleft()
                request.result()
                yield done
        for request, done in pending:
            request.result()
            yield done


def build_version(store: VectorStore, name: str, live: LiveRows, properties: dict[str, str],
                  sample: set[str], tags: TagColumns | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Create collection `name` from the live rows (and the `tags` columns), then flush, index and
    seal it (VectorStore.seal), writing its exact copy on milvus-lite. Returns the vectors of the `sample` keys as they were inserted, and
    the seconds spent inserting and indexing."""
    key = live.key_column
    fields = served_fields(live.schema, key)
    check_storable(store, live, fields)
    dim = live.schema.field(EMBEDDING).type.list_size
    if store.has(name):
        store.drop(name)  # a half-built version of an interrupted load
    tag_fields = [(field.name, text_list_field()) for field in tags.fields] if tags else []
    store.create_collection(name, key, fields + tag_fields, dim, properties)
    vectors, started = {}, time.perf_counter()
    progress = Progress(logger, f"{name}: inserted", live.rows.num_rows, "rows")
    batches = inserted_batches(store, name, insert_batches(live, fields, tags),
                               1 if store.is_lite else SERVER_INSERTS_IN_FLIGHT)
    # The exact copy (milvus-lite) is written from the acknowledged batches, in order, and published
    # once the collection is sealed; a load that fails in any way leaves none of it.
    copy = store.exact_copy_writer(name)
    with copy or contextlib.nullcontext():
        for batch in batches:
            if copy is not None:
                copy.write(batch)
            picked = batch.filter(pc.is_in(batch[key], pa.array(sorted(sample), pa.string())))
            vectors.update(zip(picked[key].to_pylist(), picked[EMBEDDING].to_numpy(zero_copy_only=False)))
            progress.advance(batch.num_rows)
        inserted_at = time.perf_counter()
        store.seal(name)
    return vectors, {"insert_s": inserted_at - started, "index_s": time.perf_counter() - inserted_at}


def validate(store: VectorStore, name: str, key: str, expected_rows: int, sample: dict[str, np.ndarray]) -> None:
    """The new version holds every row, and a sample of its vectors reads back as written."""
    count = store.count(name)
    if count != expected_rows:
        raise IntegrityError(f"validation of {name}: {count} rows, expected {expected_rows}")
    stored = store.vectors(name, key, sorted(sample))
    for row_key, vector in sample.items():
        if row_key not in stored or not np.allclose(stored[row_key], vector, atol=1e-6):
            raise IntegrityError(f"validation of {name}: the vector of {row_key!r} does not read back")


def sample_keys(live: LiveRows) -> set[str]:
    picks = np.linspace(0, live.rows.num_rows - 1, num=min(VALIDATION_SAMPLE, live.rows.num_rows), dtype=int)
    return set(live.rows[live.key_column].take(pa.array(picks)).to_pylist())


def build_and_swap(store: VectorStore, live: LiveRows, alias: str, version: str, skip_unchanged: bool = False,
                   tags: TagColumns | None = None, properties: dict[str, str] | None = None) -> dict:
    """Build `<alias>_<version>` from the live rows (with the `tags` columns, and `properties`
    beside vidx's own), validate it, and only then move `alias` to it. With `skip_unchanged`, a
    served version holding exactly these rows stays and nothing is built."""
    name, rows, model = version_name(alias, version), live.rows.num_rows, live.model()
    started = time.perf_counter()
    previous = store.alias_target(alias)
    properties = properties or {}
    digest = rows_digest(live.rows, live.key_column, {**model, **properties, **({"tags": tags.digest} if tags else {})})
    if skip_unchanged and previous and store.properties(previous).get(DIGEST_KEY) == digest:
        logger.info("%s: %s already holds these %d rows", alias, previous, rows)
        return {"collection": previous, "rows": rows, "previous": previous, "unchanged": True,
                "seconds": round(time.perf_counter() - started, 3)}
    properties = {**properties, MODEL_KEY: json.dumps(model, sort_keys=True), PREVIOUS_KEY: previous or "",
                  DIGEST_KEY: digest}
    try:
        sample, seconds = build_version(store, name, live, properties, sample_keys(live), tags)
        validate(store, name, live.key_column, rows, sample)
    except (VectorStoreError, IntegrityError):
        if store.has(name):
            store.drop(name)  # the alias still points at the previous version
        raise
    store.swap_alias(alias, name)
    total = time.perf_counter() - started
    logger.info("%s -> %s (%d rows in %.1f s, was %s)", alias, name, rows, total, previous)
    return {"collection": name, "rows": rows, "previous": previous, "seconds": round(total, 3),
            "rows_per_s": round(rows / total, 1), "insert_rows_per_s": round(rows / seconds["insert_s"], 1),
            "index_s": round(seconds["index_s"], 3)}


def retire_versions(store: VectorStore, alias: str, keep: int) -> list[str]:
    """Drop every version of `alias` but the served one and the keep-1 served before it; the
    leftovers of interrupted or failed loads were never served, so they always go."""
    kept, name = [], store.alias_target(alias)
    while name and len(kept) < keep and store.has(name):
        kept.append(name)
        name = store.properties(name).get(PREVIOUS_KEY)
    retired = [name for name in store.versions(alias) if name not in kept]
    for name in retired:
        store.drop(name)
    return retired

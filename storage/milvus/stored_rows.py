"""An index's live rows as a collection stores them: its fields, and its rows as insert requests,
each row a version stamped with the night that wrote it (nights.py)."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pymilvus import DataType

from storage.progress import Progress
from storage.schema import EMBEDDING, NIGHT_FROM, NIGHT_TO, NOT_SERVED, ROW_VERSION
from storage.table.live_rows import LiveRows
from storage.table.tag_columns import TagColumns

from .fields import MAX_VARCHAR, collection_fields, joined_field
from .nights import LIVE, row_versions, stamped
from .store import VectorStore, VectorStoreError

logger = logging.getLogger(__name__)

# Bytes of vectors per insert request (4,096 rows at 1024-d). Against Milvus 2.3.5 the insert rate
# peaked near 16 MB requests, a quarter of the server's 64 MB request limit (docs/benchmarks.md,
# "Why the constants are what they are").
INSERT_BYTES = 16 << 20
# Insert requests a server has at once: vidx packs the next while the server stores one, which
# inserted more rows/s than one in flight (docs/benchmarks.md, "Why the constants are what they
# are"; today's rate: "Inserts"). milvus-lite (Python, in one process or its server mode) takes one
# at a time, and its exact copy is written in order.
SERVER_INSERTS_IN_FLIGHT = 2
NIGHT_FIELDS = [(NIGHT_FROM, {"datatype": DataType.INT64}), (NIGHT_TO, {"datatype": DataType.INT64})]


def served_fields(schema: pa.Schema, key: str) -> list[tuple[str, dict]]:
    return [(name, args) for name, args in collection_fields(schema, key) if name not in NOT_SERVED]


def stored_fields(live: LiveRows, tags: TagColumns | None) -> list[tuple[str, dict]]:
    """The fields of a collection serving `live` (and the `tags` columns), after its primary key
    (the row version): the key, the served columns, the tags, the nights."""
    tag_fields = [(field.name, joined_field(field)) for field in tags.fields] if tags else []
    key = (live.key_column, {"datatype": DataType.VARCHAR, "max_length": MAX_VARCHAR})
    return [key, *served_fields(live.schema, live.key_column), *tag_fields, *NIGHT_FIELDS]


def null_counts(live: LiveRows, columns: list[str]) -> dict[str, int]:
    """Nulls per column among the live rows, for the columns that have any."""
    counts = dict.fromkeys(columns, 0)
    for batch in live.batches([live.key_column, *columns], 65_536):
        for column in columns:
            counts[column] += batch[column].null_count
    return {column: count for column, count in counts.items() if count}


def check_storable(store: VectorStore, live: LiveRows) -> None:
    """A server without nullable fields cannot hold a null: name the first column that has one."""
    if store.nullable:
        return
    for column, count in null_counts(live, [name for name, _ in served_fields(live.schema, live.key_column)]).items():
        raise VectorStoreError(
            f"column {column!r} is empty (null) in {count} of the {live.rows.num_rows} rows to serve, and "
            f"{store.engine} has no nullable fields (Milvus 2.5 and milvus-lite have): give every video a "
            f"{column} in the manifest, or serve from Milvus 2.5+ or milvus-lite")


def insert_batches(live: LiveRows, tags: TagColumns | None = None) -> Iterator[pa.Table]:
    """The live rows as insert requests: the key, the served columns, the `tags` columns and the
    vectors, INSERT_BYTES of vectors at a time."""
    dim = live.schema.field(EMBEDDING).type.list_size
    fields = [name for name, _ in served_fields(live.schema, live.key_column)]
    batches = live.batches([live.key_column, *fields, EMBEDDING], max(1, INSERT_BYTES // (4 * dim)))
    if tags is None:
        return batches
    order = [live.key_column, *fields, *(f.name for f in tags.fields), EMBEDDING]
    return (tags.attach(batch).select(order) for batch in batches)


def stored_batches(live: LiveRows, tags: TagColumns | None, night: int) -> Iterator[pa.Table]:
    """insert_batches, each row stamped as a version written at `night` (nights.py)."""
    tag_columns = [field.name for field in tags.fields] if tags else []
    for batch in insert_batches(live, tags):
        yield stamped(batch, row_versions(batch, live.key_column, tag_columns), night, LIVE)


def inserted_batches(write: Callable[[str, pa.Table], int | None], name: str, batches: Iterable[pa.Table],
                     in_flight: int) -> Iterator[pa.Table]:
    """Write each batch into collection `name` (VectorStore.insert or .upsert), up to `in_flight`
    requests at once; yields each batch once the database has acknowledged it."""
    with ThreadPoolExecutor(in_flight, thread_name_prefix="insert") as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append((pool.submit(write, name, batch), batch))
            if len(pending) == in_flight:
                request, done = pending.popleft()
                request.result()
                yield done
        for request, done in pending:
            request.result()
            yield done


def write_rows(store: VectorStore, write: Callable[[str, pa.Table], int | None], name: str, live: LiveRows,
               tags: TagColumns | None, night: int, sample_column: str, sample: set[str],
               sealed: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """Write the live rows (with the `tags` columns) into collection `name` as row versions of
    `night`, through `write` (VectorStore.insert, or an upsert), and on milvus-lite the exact copy of
    that night beside them, written from the acknowledged batches in order and published once all
    are in (and `sealed` has run, when given): a write that fails in any way leaves none of it.
    Returns the vectors of the rows whose `sample_column` holds one of `sample`, as written, by
    their row versions."""
    progress = Progress(logger, f"{name}: night {night}: rows written", live.rows.num_rows, "rows")
    batches = inserted_batches(write, name, stored_batches(live, tags, night),
                               1 if store.is_lite else SERVER_INSERTS_IN_FLIGHT)
    copy, vectors, wanted = store.exact_copy_writer(name, night), {}, pa.array(sorted(sample), pa.string())
    with copy or contextlib.nullcontext():
        for batch in batches:
            if copy is not None:
                copy.write(batch.drop_columns([NIGHT_FROM, NIGHT_TO]))
            picked = batch.filter(pc.is_in(batch[sample_column], wanted))
            vectors.update(zip(picked[ROW_VERSION].to_pylist(), picked[EMBEDDING].to_numpy(zero_copy_only=False)))
            progress.advance(batch.num_rows)
        if sealed is not None:
            sealed()
    return vectors

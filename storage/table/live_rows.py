"""The live rows of a dataset for a load: found from the parts' small columns, then read a batch at
a time with their vectors, holding a bounded number of bytes whatever the size of a part.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .dataset import (PART_READERS, DatasetError, PartRows, filesystem, live_mask, part_bounds, read_ahead,
                      read_part_rows)
from storage.schema import EMBEDDING, GROUP_COLUMN, VIDEO_KEY

# Bytes of parts (uncompressed) read ahead at once. Small parts (256 rows at D = 1024: 1 MB) are
# read PART_READERS at a time, which hides an object store's round trips; a part larger than this
# is streamed alone, STREAM_BUFFER bytes of a column at a time.
READ_AHEAD_BYTES = 64 << 20
STREAM_BUFFER = 1 << 20
# The values an embedding may hold on disk, each read as float32, the type vidx stores: pandas and
# Spark write lists of float64, an export at half precision float16.
FLOAT_TYPES = (pa.float16(), pa.float32(), pa.float64())


@dataclass
class LiveRows:
    """The live rows of a dataset, found from its small columns; the wide ones are read in batches.

    `rows` holds the key column, its group column (`video_id`) and `run_id` of every live row, in
    part order, and `_part` (the index of its part in `paths`): a few bytes per row, where the
    vectors are kilobytes."""

    paths: list[str]
    filesystem: fsspec.AbstractFileSystem
    schema: pa.Schema  # the schemas of the parts holding live rows, unified
    rows: pa.Table
    key_column: str
    models: list[bytes | None]  # each part's footer record of the model that made it
    nbytes: list[int]  # each part's size uncompressed

    def model(self) -> dict:
        """The model record in the footers of the parts holding live rows; they must all agree."""
        records = {self.models[i] for i in np.unique(self.rows["_part"].to_numpy())}
        if None in records:
            raise DatasetError("the embeddings carry no model record (not written by vidx index?)")
        if len(records) > 1:
            raise DatasetError(f"the live rows were made by {len(records)} different models; run vidx index again")
        return json.loads(records.pop())

    def _cast(self, column: pa.Array, name: str, i: int) -> pa.Array:
        """A column of part i in the unified schema (an embedding as fixed_size_list<float32>[D])."""
        try:
            return column.cast(self.schema.field(name).type)
        except pa.ArrowInvalid as e:  # lists of another length than the first vector's D
            raise DatasetError(f"{self.paths[i]}: column {name!r} cannot be read as "
                               f"{self.schema.field(name).type}: {e}") from e

    def _part_batches(self, i: int, live: pa.Array, columns: list[str], rows_per_batch: int) -> Iterator[pa.Table]:
        """The live rows of part i, `columns` in the unified schema, streamed from the file."""
        with self.filesystem.open(self.paths[i], "rb") as f:
            part = pq.ParquetFile(f, buffer_size=STREAM_BUFFER, pre_buffer=False)
            present = [c for c in columns if c in part.schema_arrow.names]
            for batch in part.iter_batches(batch_size=rows_per_batch, columns=present):
                batch = batch.filter(pc.is_in(batch[self.key_column], live))
                yield pa.table([self._cast(batch[c], c, i) if c in present
                                else pa.nulls(batch.num_rows, self.schema.field(c).type) for c in columns],
                               names=columns)

    def _live_parts(self) -> list[tuple[int, pa.ChunkedArray]]:
        """(part index, the keys of its live rows) of each part holding any, in part order."""
        bounds = part_bounds(self.rows, len(self.paths))
        keys = self.rows[self.key_column]
        return [(i, keys[bounds[i]:bounds[i + 1]]) for i in np.flatnonzero(np.diff(bounds))]

    def first_vector_length(self) -> int | None:
        """The values in the first live embedding (None: no live row has one): the D of a column of
        lists that may be of any length, read from the first part holding one."""
        for i, live in self._live_parts():
            with contextlib.closing(self._part_batches(i, live, [self.key_column, EMBEDDING], 1024)) as batches:
                for batch in batches:
                    lengths = pc.list_value_length(batch[EMBEDDING]).drop_null()
                    if len(lengths):
                        return lengths[0].as_py()
        return None

    def _tables(self, columns: list[str], rows_per_batch: int) -> Iterator[pa.Table]:
        """The live rows of each part holding any, in part order: small parts read ahead in
        parallel, large ones streamed."""
        parts = self._live_parts()
        largest = max((self.nbytes[i] for i, _ in parts), default=0)
        readers = int(np.clip(READ_AHEAD_BYTES // max(largest, 1), 1, PART_READERS))
        if readers == 1:
            for i, live in parts:
                yield from self._part_batches(i, live, columns, rows_per_batch)
            return
        for tables in read_ahead(lambda part: list(self._part_batches(*part, columns, rows_per_batch)), parts, readers):
            yield from tables

    def batches(self, columns: list[str], rows_per_batch: int) -> Iterator[pa.Table]:
        """The live rows' `columns`, about `rows_per_batch` rows at a time (parts are often smaller)."""
        pending, pending_rows = [], 0
        for table in self._tables(columns, rows_per_batch):
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= rows_per_batch:
                yield pa.concat_tables(pending)
                pending, pending_rows = [], 0
        if pending_rows:
            yield pa.concat_tables(pending)


def rows_of(part_rows: PartRows, rows: pa.Table, directory: str, key_column: str) -> LiveRows:
    """`rows` (some of part_rows.rows, in their order) as LiveRows, to read whole."""
    fs, _ = filesystem(directory)
    holding = np.unique(rows["_part"].to_numpy())
    kept = [*dict.fromkeys([key_column, GROUP_COLUMN[key_column]]), "run_id", "_part"]
    live = LiveRows(part_rows.paths, fs, part_rows.unified_schema(holding),
                    rows.select([c for c in kept if c in rows.column_names]).combine_chunks(), key_column,
                    part_rows.models, part_rows.nbytes)
    return float32_embeddings(live, directory)


def check_embedding_type(kind: pa.DataType, directory: str) -> None:
    """A DatasetError unless `kind` is a list (of any length type) of floats."""
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    if not (is_list and kind.value_type in FLOAT_TYPES):
        raise DatasetError(f"{directory}: column {EMBEDDING!r} is {kind}; an embedding is a list of floats "
                           "(float16, float32 or float64), stored as float32")


def float32_embeddings(live: LiveRows, directory: str) -> LiveRows:
    """`live`, its embeddings read as vidx stores them, fixed_size_list<float32>[D], from a list of
    any float type or length type; a DatasetError, before anything is built, for any other type.
    Cast as each batch is read (LiveRows._part_batches), so every reader sees float32: the
    database's insert and its exact copy, a night's new rows, duplicates and tags alike."""
    if EMBEDDING not in live.schema.names:
        return live
    field = live.schema.field(EMBEDDING)
    check_embedding_type(field.type, directory)
    dim = field.type.list_size if pa.types.is_fixed_size_list(field.type) else live.first_vector_length()
    if dim is None:
        if live.rows.num_rows:
            raise DatasetError(f"{directory}: no live row has an {EMBEDDING!r}")
        return live
    stored = field.with_type(pa.list_(pa.float32(), dim))
    return replace(live, schema=live.schema.set(live.schema.get_field_index(EMBEDDING), stored))


def live_table(part_rows: PartRows, key_column: str, status: str | None) -> pa.Table:
    """The live rows of `part_rows`, all its columns (only those with `status`, when given and the
    dataset has that column)."""
    rows = part_rows.rows.filter(live_mask(part_rows.rows, None, key_column))
    if status and "status" in rows.column_names:  # a part without `status` reads it as null
        rows = rows.filter(pc.equal(rows["status"], status))
    return rows


def live_rows(part_rows: PartRows, directory: str, key_column: str, status: str | None) -> LiveRows:
    """The live rows of `part_rows` as LiveRows (see live_table)."""
    return rows_of(part_rows, live_table(part_rows, key_column, status), directory, key_column)


def scan_live(directory: str, key_column: str = VIDEO_KEY, status: str | None = None,
              known: PartRows | None = None) -> LiveRows | None:
    """The rows `read_live` returns (only those with `status`, when given), without reading the
    vectors yet: memory grows by a few bytes per row, not by the width of a row. `known`: the
    parts' small columns as read earlier (only parts not in it are read). None when empty."""
    columns = [*dict.fromkeys([key_column, GROUP_COLUMN[key_column]]), "run_id", *(["status"] if status else [])]
    part_rows = read_part_rows(directory, columns, known)
    return None if part_rows is None else live_rows(part_rows, directory, key_column, status)

"""The embeddings dataset: Parquet parts under OUTPUT/videos/ and OUTPUT/captions/.

Parts are published atomically (locally a temporary name, then a rename; on object stores, which
have no rename, one PUT of the finished bytes) under names derived from their rows, so a retried
write replaces and never duplicates. Each row carries the `run_id` of the run that
wrote it; for every video the rows of the newest run win, and compaction (storage.table.compaction)
removes the rest. Every part's small columns are read once per run (PartRows) and handed on, so
a night reads no part twice; the vectors are read only where rows are rewritten or loaded
(storage.table.live_rows).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from errors import UserError

from .atomic import TEMP_PREFIX, publish
from .digests import part_name
from storage.schema import GROUP_COLUMN, MODEL_KEY, VIDEO_KEY

logger = logging.getLogger(__name__)

# Rows per part: big enough for efficient Parquet, small enough that a crash loses little work.
ROWS_PER_PART = 256

T = TypeVar("T")
R = TypeVar("R")


class DatasetError(UserError):
    """An embeddings dataset vidx cannot use as it is (not made by vidx, mixed models); one line."""


def filesystem(directory: str):
    """The fsspec file system of `directory` (a path or URL) and its path there."""
    return fsspec.core.url_to_fs(directory)


def nan_as_null(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Numbers that passed through numpy carry NaN where they were missing; stored, they are null."""
    if pa.types.is_floating(values.type):
        return pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
    return values


def same_values(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    """Stored values `a` against the manifest's `b`, as stored (NaN is null there): equal values,
    or both null. Values are compared in the stored type; where they do not cast, as Python objects."""
    try:
        b = nan_as_null(b).cast(a.type)
        equal = pc.equal(a, b)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # lists, structs, or types that do not cast
        return pa.chunked_array([pa.array([x == y for x, y in zip(a.to_pylist(), b.to_pylist())], pa.bool_())])
    return pc.coalesce(equal, pc.and_(pc.is_null(a), pc.is_null(b)))


def conform(columns: Mapping[str, pa.Array | pa.ChunkedArray], num_rows: int, schema: pa.Schema) -> pa.Table:
    """Rows in the dataset's schema: each field from `columns` cast to its type (NaN as null), null
    where absent."""
    arrays = [nan_as_null(columns[f.name]).cast(f.type) if f.name in columns else pa.nulls(num_rows, f.type)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_part(table: pa.Table, directory: str, key_column: str) -> str:
    """Write atomically; a reader sees the whole part or nothing. Returns the part's path."""
    fs, root = filesystem(directory)
    fs.makedirs(root, exist_ok=True)
    final = f"{root.rstrip('/')}/{part_name(table, key_column)}"
    buffer = pa.BufferOutputStream()  # a part is bounded by rows_per_part: about 1 MB at D = 1024
    pq.write_table(table, buffer)
    publish(fs, final, buffer.getvalue().to_pybytes())
    return final


def _listing(fs, root: str) -> list[str]:
    """The directory as it is now: fsspec caches listings, and other processes write parts."""
    fs.invalidate_cache(root)
    try:
        return fs.ls(root, detail=False)
    except FileNotFoundError:
        return []


def list_parts(directory: str) -> list[str]:
    fs, root = filesystem(directory)
    return sorted(p for p in _listing(fs, root) if os.path.basename(p).startswith("part-"))


def list_tables(directory: str) -> list[str]:
    """The names of the tables (subdirectories) under `directory`: OUTPUT/texts/NAME, OUTPUT/tags/NAME."""
    fs, root = filesystem(directory)
    return sorted(os.path.basename(p.rstrip("/")) for p in _listing(fs, root) if fs.isdir(p))


def remove_temp_files(directory: str) -> int:
    """What interrupted writes left behind, never read: temporary files locally, unfinished
    multipart uploads on S3 (invisible, but stored and billed until aborted). Called as a run
    starts, when no writer of this dataset is active."""
    fs, root = filesystem(directory)
    if hasattr(fs, "list_multipart_uploads"):  # s3fs
        bucket, _, prefix = root.partition("/")
        try:
            uploads = fs.list_multipart_uploads(bucket)
        except FileNotFoundError:  # no bucket yet: the first write makes it
            return 0
        stale = [u for u in uploads if u["Key"].startswith(prefix.rstrip("/") + "/")]
        for upload in stale:
            fs.abort_mpu(bucket, upload["Key"], upload["UploadId"])
        return len(stale)
    temps = [p for p in _listing(fs, root) if os.path.basename(p).startswith(TEMP_PREFIX)]
    for path in temps:
        fs.rm(path)
    return len(temps)


# Parts read at once: hides an object store's round trips; each reader lives as long as its part.
PART_READERS = 8


@dataclass
class PartColumns:
    """What reading one part's small columns gives: its footer's schema, its size, the columns."""

    schema: pa.Schema
    nbytes: int  # its rows uncompressed, all columns (the footer's row group sizes)
    table: pa.Table


def _footer_and_columns(fs, path: str, columns: list[str] | None) -> PartColumns:
    """One part's footer and those of `columns` it has (all when None), through a reader that ends
    with the call: a pyarrow dataset's fragments would keep every part's footer once read."""
    with fs.open(path, "rb") as f:
        part = pq.ParquetFile(f)
        schema, meta = part.schema_arrow, part.metadata
        nbytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        return PartColumns(schema, nbytes,
                           part.read(columns=[c for c in columns if c in schema.names] if columns else None))


def read_ahead(read: Callable[[T], R], items: Iterable[T], readers: int) -> Iterator[R]:
    """read(item) for each item, in order, by `readers` threads; at most `readers` results are
    held before they are taken (Executor.map would read everything ahead of a slow consumer)."""
    with ThreadPoolExecutor(readers, thread_name_prefix="part-reader") as pool:
        ahead: deque = deque()
        for item in items:
            ahead.append(pool.submit(read, item))
            if len(ahead) == readers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def read_parts(paths: list[str], fs, columns: list[str] | None) -> Iterator[PartColumns]:
    """Each part's footer and `columns`, in the order of `paths`, PART_READERS parts at a time."""
    return read_ahead(lambda path: _footer_and_columns(fs, path, columns), paths, PART_READERS)


def part_bounds(rows: pa.Table, parts: int) -> np.ndarray:
    """Where each part's rows start in `rows` (ordered by `_part`), and where the last ends."""
    return np.searchsorted(rows["_part"].to_numpy(), np.arange(parts + 1))


@dataclass
class PartRows:
    """The rows of every part of a dataset with `_part`, the index of each row's part in `paths`;
    rows are in part order, and in file order within a part. Parts of different runs may differ in
    metadata columns or D: columns are unified permissively (a part without one reads null)."""

    paths: list[str]
    schemas: list[pa.Schema]  # each part's; parts of one run share one object
    models: list[bytes | None]  # each part's footer record of the model that made it
    nbytes: list[int]  # each part's size uncompressed
    rows: pa.Table

    def bounds(self) -> np.ndarray:
        """The rows of part i are rows[bounds[i]:bounds[i + 1]]."""
        return part_bounds(self.rows, len(self.paths))

    def unified_schema(self, parts: Iterable[int] | None = None) -> pa.Schema:
        """The schemas of `parts` (all when None or none) unified."""
        parts = list(range(len(self.paths)) if parts is None else parts) or range(len(self.paths))
        distinct = {id(self.schemas[i]): self.schemas[i] for i in parts}
        return pa.unify_schemas(list(distinct.values()), promote_options="permissive")

    def select(self, columns: list[str]) -> PartRows:
        """Only `columns` (those it has) of the rows: the others' memory goes with the original."""
        kept = [c for c in columns if c in self.rows.column_names]
        return PartRows(self.paths, self.schemas, self.models, self.nbytes, self.rows.select([*kept, "_part"]))

    def parts(self, chosen: np.ndarray, rows: np.ndarray | None = None, renamed: dict[int, str] | None = None) -> PartRows:
        """The parts `chosen` (indices, ascending), numbered anew: only `rows` of them when given (a
        mask over self.rows), and under a new path where `renamed` says so."""
        renamed = renamed or {}
        bounds = self.bounds()
        taken = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in chosen]) if len(chosen) else np.array([], int)
        renumber = np.full(len(self.paths), -1, np.int32)
        renumber[chosen] = np.arange(len(chosen), dtype=np.int32)
        if rows is not None:
            taken = taken[rows[taken]]
        table = self.rows.take(pa.array(taken, pa.int64()))
        table = table.set_column(table.schema.get_field_index("_part"), "_part",
                                 pa.array(renumber[table["_part"].to_numpy()]))
        return PartRows([renamed.get(i, self.paths[i]) for i in chosen], [self.schemas[i] for i in chosen],
                          [self.models[i] for i in chosen], [self.nbytes[i] for i in chosen], table)


def _part_rows(paths: list[str], read: Iterable[PartColumns]) -> PartRows:
    distinct, schemas, models, nbytes, tables = [], [], [], [], []
    for i, part in enumerate(read):
        # Parts of one run share a schema: keep one object of it, not one per part.
        shared = next((seen for seen in distinct if part.schema.equals(seen, check_metadata=True)), None)
        if shared is None:
            distinct.append(shared := part.schema)
        schemas.append(shared)
        models.append((part.schema.metadata or {}).get(MODEL_KEY.encode()))
        nbytes.append(part.nbytes)
        tables.append(part.table.append_column("_part", pa.array(np.full(part.table.num_rows, i, np.int32))))
    return PartRows(paths, schemas, models, nbytes, pa.concat_tables(tables, promote_options="permissive"))


def _concat(first: PartRows, second: PartRows) -> PartRows:
    rows = second.rows.set_column(second.rows.schema.get_field_index("_part"), "_part",
                                  pc.add(second.rows["_part"], pa.scalar(len(first.paths), pa.int32())))
    return PartRows(first.paths + second.paths, first.schemas + second.schemas, first.models + second.models,
                      first.nbytes + second.nbytes, pa.concat_tables([first.rows, rows], promote_options="permissive"))


def read_part_rows(directory: str, columns: list[str] | None, known: PartRows | None = None) -> PartRows | None:
    """`columns` (all when None) of every part; None when there is no part. Parts in `known` (read
    earlier with these columns) are taken from it, not read again: a part's name is derived from
    its rows, so the same name holds the same rows."""
    paths = list_parts(directory)
    if not paths:
        return None
    if known is not None and columns is not None and set(columns) <= set(known.rows.column_names):
        index = {path: i for i, path in enumerate(known.paths)}
        reused = known.select(columns).parts(np.array(sorted(index[p] for p in paths if p in index), int))
        paths = [p for p in paths if p not in index]
    else:
        reused = None
    fs, _ = filesystem(directory)
    read = _part_rows(paths, read_parts(paths, fs, columns)) if paths else None
    if reused is None or read is None:
        return reused or read
    return _concat(reused, read)


def _codes(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each value's index among the distinct values (a hash pass, no sort)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.dictionary_encode(values).indices.to_numpy()


def live_mask(rows: pa.Table, wanted_video_ids: pa.Array | None, key_column: str) -> pa.Array:
    """Rows to keep: videos still wanted (all when None), only the newest run's rows per video, one
    row per key; a corpus' rows go by text instead (schema.GROUP_COLUMN). Array kernels and numpy,
    not Python loops (a library's keys are millions of strings), and not a join: Acero's hash join
    held on to memory for every row after it returned (docs/benchmarks.md, "Why the constants are
    what they are")."""
    group = GROUP_COLUMN[key_column]
    video = _codes(rows[group])
    run = pc.rank(rows["run_id"], tiebreaker="dense").to_numpy()  # run ids sort by time
    newest_run = np.zeros(video.max(initial=-1) + 1, run.dtype)
    np.maximum.at(newest_run, video, run)
    newest = run == newest_run[video]
    if wanted_video_ids is not None:
        newest &= pc.is_in(rows[group], wanted_video_ids).to_numpy(zero_copy_only=False)
    candidates = np.flatnonzero(newest)
    keys = _codes(rows[key_column])[candidates]
    _, first = np.unique(keys, return_index=True)
    if len(first) < len(candidates) and "_part" in rows.column_names:
        # A crash between writing a compacted part and deleting its original leaves a key in both;
        # the compacted part holds fewer rows. Keeping its copy leaves it whole (compaction then
        # deletes the original) where keeping the other would rewrite the original onto its name.
        part = rows["_part"].to_numpy()
        by_part_size = np.argsort(np.bincount(part)[part[candidates]], kind="stable")
        _, first = np.unique(keys[by_part_size], return_index=True)
        first = by_part_size[first]
    keep = np.zeros(rows.num_rows, bool)
    keep[candidates[first]] = True
    return pa.array(keep)


def read_live(directory: str, key_column: str = VIDEO_KEY, columns: list[str] | None = None) -> pa.Table | None:
    """The dataset as readers should see it: each video's newest rows, each key once (the same
    rows `compact` keeps, so this equals a plain read of a compacted dataset)."""
    part_rows = read_part_rows(directory, columns=columns)
    if part_rows is None:
        return None
    return part_rows.rows.filter(live_mask(part_rows.rows, None, key_column)).drop_columns(["_part"])

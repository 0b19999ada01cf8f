"""The embeddings dataset: Parquet parts under OUTPUT/videos/ and OUTPUT/captions/.

Parts are published atomically (locally a temporary name, then a rename; on object stores, which
have no rename, one PUT of the finished bytes) under names derived from their rows, so a retried
write replaces and never duplicates. Each row carries the `run_id` of the run that
wrote it; for every video the rows of the newest run win, and `compact` removes the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from errors import UserError

from .atomic import TEMP_PREFIX, publish
from .schema import MODEL_KEY, VIDEO_KEY

logger = logging.getLogger(__name__)


class DatasetError(UserError):
    """An embeddings dataset vidx cannot use as it is (not made by vidx, mixed models); one line."""


def _fs(directory: str):
    return fsspec.core.url_to_fs(directory)


def part_name(table: pa.Table, key_column: str) -> str:
    """Named by its rows (keys and run), so writing the same rows again lands on the same file."""
    digest = hashlib.blake2b(digest_size=12)
    for key in sorted(table[key_column].to_pylist()):
        digest.update(key.encode() + b"\0")
    digest.update(table["run_id"][0].as_py().encode() if table.num_rows else b"")
    return f"part-{digest.hexdigest()}.parquet"


def nan_as_null(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Numbers that passed through numpy carry NaN where they were missing; stored, they are null."""
    if pa.types.is_floating(values.type):
        return pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
    return values


def conform(columns: Mapping[str, pa.Array | pa.ChunkedArray], num_rows: int, schema: pa.Schema) -> pa.Table:
    """Rows in the dataset's schema: each field from `columns` cast to its type (NaN as null), null
    where absent."""
    arrays = [nan_as_null(columns[f.name]).cast(f.type) if f.name in columns else pa.nulls(num_rows, f.type)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_part(table: pa.Table, directory: str, key_column: str) -> str:
    """Write atomically; a reader sees the whole part or nothing. Returns the part's path."""
    fs, root = _fs(directory)
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
    fs, root = _fs(directory)
    return sorted(p for p in _listing(fs, root) if os.path.basename(p).startswith("part-"))


def remove_temp_files(directory: str) -> int:
    """What interrupted writes left behind, never read: temporary files locally, unfinished
    multipart uploads on S3 (invisible, but stored and billed until aborted). Called as a run
    starts, when no writer of this dataset is active."""
    fs, root = _fs(directory)
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


def _footer_and_columns(fs, path: str, columns: list[str] | None) -> tuple[pa.Schema, pa.Table]:
    """One part's schema and those of `columns` it has (all when None), through a reader that ends
    with the call: a pyarrow dataset's fragments would keep every part's footer once read."""
    with fs.open(path, "rb") as f:
        part = pq.ParquetFile(f)
        schema = part.schema_arrow
        return schema, part.read(columns=[c for c in columns if c in schema.names] if columns else None)


def read_parts(paths: list[str], fs, columns: list[str] | None) -> Iterator[tuple[pa.Schema, pa.Table]]:
    """Each part's schema and `columns`, in the order of `paths`, PART_READERS parts at a time."""
    with ThreadPoolExecutor(PART_READERS, thread_name_prefix="part-reader") as pool:
        yield from pool.map(lambda path: _footer_and_columns(fs, path, columns), paths)


@dataclass
class TaggedRows:
    """The rows of every part of a dataset, read in parallel, with `_part`: the index of each row's
    part in `paths`. Parts of different runs may differ in metadata columns or D: columns are
    unified permissively (a part without one reads null)."""

    paths: list[str]
    schemas: list[pa.Schema]  # the distinct part schemas: parts of one run share one
    models: list[bytes | None]  # each part's footer record of the model that made it
    rows: pa.Table


def read_tagged_rows(directory: str, columns: list[str] | None) -> TaggedRows | None:
    """`columns` (all when None) of every part; None when there is no part."""
    paths = list_parts(directory)
    if not paths:
        return None
    fs, _ = _fs(directory)
    schemas, models, tables = [], [], []
    for i, (schema, table) in enumerate(read_parts(paths, fs, columns)):
        if not any(schema.equals(seen, check_metadata=True) for seen in schemas):
            schemas.append(schema)
        models.append((schema.metadata or {}).get(MODEL_KEY.encode()))
        tables.append(table.append_column("_part", pa.array(np.full(table.num_rows, i, np.int32))))
    return TaggedRows(paths, schemas, models, pa.concat_tables(tables, promote_options="permissive"))


def _codes(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each value's index among the distinct values (a hash pass, no sort)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.dictionary_encode(values).indices.to_numpy()


def live_mask(rows: pa.Table, wanted_video_ids: set[str] | None, key_column: str) -> pa.Array:
    """Rows to keep: videos still wanted (all when None), only the newest run's rows per video, one
    row per key. Array kernels and numpy, not Python loops (a library's keys are millions of
    strings), and not a join: Acero's hash join kept ~450 bytes per row after it returned."""
    video = _codes(rows["video_id"])
    run = pc.rank(rows["run_id"], tiebreaker="dense").to_numpy()  # run ids sort by time
    newest_run = np.zeros(video.max(initial=-1) + 1, run.dtype)
    np.maximum.at(newest_run, video, run)
    newest = run == newest_run[video]
    if wanted_video_ids is not None:
        wanted = pa.array(sorted(wanted_video_ids), pa.string())
        newest &= pc.is_in(rows["video_id"], wanted).to_numpy(zero_copy_only=False)
    # A crash between writing a compacted part and deleting its original can leave a key twice.
    candidates = np.flatnonzero(newest)
    _, first = np.unique(_codes(rows[key_column])[candidates], return_index=True)
    keep = np.zeros(rows.num_rows, bool)
    keep[candidates[first]] = True
    return pa.array(keep)


def compact(directory: str, wanted_video_ids: set[str], key_column: str) -> dict[str, int]:
    """Drop superseded, deleted and duplicated rows; parts with nothing to drop are untouched."""
    tagged = read_tagged_rows(directory, columns=[key_column, "video_id", "run_id"])
    stats = {"parts_rewritten": 0, "parts_deleted": 0, "rows_dropped": 0}
    if tagged is None:
        return stats
    rows = tagged.rows.append_column("_keep", live_mask(tagged.rows, wanted_video_ids, key_column))
    fs, _ = _fs(directory)
    for i, part in enumerate(tagged.paths):
        in_part = rows.filter(pc.equal(rows["_part"], i))
        dropped = in_part.num_rows - pc.sum(in_part["_keep"]).as_py()
        if dropped == 0:
            continue
        stats["rows_dropped"] += dropped
        keep_keys = set(in_part.filter(in_part["_keep"])[key_column].to_pylist())
        if keep_keys:
            with fs.open(part, "rb") as f:
                table = pq.read_table(f)
            write_part(table.filter(pc.is_in(table[key_column], pa.array(sorted(keep_keys)))), directory, key_column)
            stats["parts_rewritten"] += 1
        else:
            stats["parts_deleted"] += 1
        fs.rm(part)  # only after its surviving rows are safely in a new part
    return stats


def read_live(directory: str, key_column: str = VIDEO_KEY, columns: list[str] | None = None) -> pa.Table | None:
    """The dataset as readers should see it: each video's newest rows, each key once (the same
    rows `compact` keeps, so this equals a plain read of a compacted dataset)."""
    tagged = read_tagged_rows(directory, columns=columns)
    if tagged is None:
        return None
    return tagged.rows.filter(live_mask(tagged.rows, None, key_column)).drop_columns(["_part"])


# Parts scanned by one dataset. A dataset's fragments keep each part's Parquet footer once read
# (~60 KB at D = 1024, 256 rows a part: 240 MB for a million rows), so a scan over all parts at
# once would hold memory per row; a group holds a few MB and is dropped when scanned.
PARTS_PER_SCAN = 64


@dataclass
class LiveRows:
    """The live rows of a dataset, found from its small columns; the wide ones are read in batches.

    `rows` holds the key column and `run_id` of every live row, in read order, and `_part` (the
    index of its part in `paths`): a few bytes per row, where the vectors are kilobytes."""

    paths: list[str]
    filesystem: fsspec.AbstractFileSystem
    schema: pa.Schema  # the parts' schemas unified
    rows: pa.Table
    key_column: str
    models: list[bytes | None]  # each part's footer record of the model that made it

    def model(self) -> dict:
        """The model record in the footers of the parts holding live rows; they must all agree."""
        records = {self.models[i] for i in np.unique(self.rows["_part"].to_numpy())}
        if None in records:
            raise DatasetError("the embeddings carry no model record (not written by vidx index?)")
        if len(records) > 1:
            raise DatasetError(f"the live rows were made by {len(records)} different models; run vidx index again")
        return json.loads(records.pop())

    def batches(self, columns: list[str], rows_per_batch: int) -> Iterator[pa.Table]:
        """The live rows' `columns`, about `rows_per_batch` rows at a time (parts are often smaller)."""
        bounds = np.searchsorted(self.rows["_part"].to_numpy(), np.arange(len(self.paths) + 1))
        keys = self.rows[self.key_column]
        pending, pending_rows = [], 0
        for first in range(0, len(self.paths), PARTS_PER_SCAN):
            group = self.paths[first:first + PARTS_PER_SCAN]
            part_index = {path: first + i for i, path in enumerate(group)}
            parts = ds.dataset(group, schema=self.schema, filesystem=self.filesystem, format="parquet")
            scanner = parts.scanner(columns=columns, batch_size=rows_per_batch, fragment_readahead=2)
            for tagged in scanner.scan_batches():
                i = part_index[tagged.fragment.path]
                live = keys[bounds[i]:bounds[i + 1]]
                batch = tagged.record_batch.filter(pc.is_in(tagged.record_batch[self.key_column], live))
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= rows_per_batch:
                    yield pa.Table.from_batches(pending)
                    pending, pending_rows = [], 0
        if pending_rows:
            yield pa.Table.from_batches(pending)


def scan_live(directory: str, key_column: str = VIDEO_KEY, status: str | None = None) -> LiveRows | None:
    """The rows `read_live` returns (only those with `status`, when given and the dataset has that
    column), without reading the vectors yet: memory grows by a few bytes per row, not by the width
    of a row. None when empty."""
    tagged = read_tagged_rows(directory, columns=[key_column, "video_id", "run_id", "status"])
    if tagged is None:
        return None
    rows = tagged.rows.filter(live_mask(tagged.rows, None, key_column))
    if status and "status" in rows.column_names:  # a part without `status` reads it as null
        rows = rows.filter(pc.equal(rows["status"], status))
    fs, _ = _fs(directory)
    return LiveRows(tagged.paths, fs, pa.unify_schemas(tagged.schemas, promote_options="permissive"),
                    rows.select([key_column, "run_id", "_part"]).combine_chunks(), key_column, tagged.models)

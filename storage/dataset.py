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
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

logger = logging.getLogger(__name__)

VIDEOS = "videos"
CAPTIONS = "captions"
TEMP_PREFIX = ".tmp-"  # readers (pyarrow, DuckDB, Spark) skip names starting with "." or "_"

# One row per video, or per segment of a long video. Metadata columns go between these and
# the embedding.
VIDEO_FIELDS = [
    pa.field("key", pa.string(), nullable=False),  # video_id#segment: the primary key
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("segment", pa.int32()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("num_frames", pa.int64()),
    pa.field("sampled_frames", pa.int32()),
    pa.field("sampled_times", pa.list_(pa.float64())),  # seconds: when each frame used starts showing
    pa.field("file_stat", pa.string()),  # size and modification time (or ETag) when read
    pa.field("content_fingerprint", pa.string()),  # blake2b of the file's bytes
    pa.field("model_fingerprint", pa.string()),
    pa.field("segment_seconds", pa.float64()),  # the --segment-seconds setting; null: whole videos
    pa.field("status", pa.string(), nullable=False),  # "ok" or "error"
    pa.field("error", pa.string()),  # a one-line reason when status is "error"
    pa.field("error_kind", pa.string()),  # "transient" (retried next run) or "permanent"; null when ok
    pa.field("run_id", pa.string(), nullable=False),
]
CAPTION_FIELDS = [
    pa.field("caption_id", pa.string(), nullable=False),  # video_id#n
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("model_fingerprint", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
]


class DatasetError(ValueError):
    """An embeddings dataset vidx cannot use as it is (not made by vidx, mixed models); one line."""


def embedding_field(dim: int) -> pa.Field:
    return pa.field("embedding", pa.list_(pa.float32(), dim))


def video_schema(dim: int, metadata: pa.Schema, model: dict) -> pa.Schema:
    fields = VIDEO_FIELDS + [f for f in metadata if f.name not in ("uri", "video_id", "captions")]
    return pa.schema(fields + [embedding_field(dim)], metadata=_file_metadata(dim, model))


def caption_schema(dim: int, model: dict) -> pa.Schema:
    return pa.schema(CAPTION_FIELDS + [embedding_field(dim)], metadata=_file_metadata(dim, model))


def _file_metadata(dim: int, model: dict) -> dict[bytes, bytes]:
    """What made these vectors, in each file's footer: the model spec and fingerprint, and D."""
    return {b"vidx.dim": str(dim).encode(), b"vidx.model": json.dumps(model, sort_keys=True).encode()}


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


def publish(fs, path: str, data: bytes) -> None:
    """Make `data` visible at `path` whole or not at all.

    Locally: a temporary dot-name, then a rename. Object stores have no rename, but make an object
    visible only when its upload completes: one PUT (or a multipart upload, completed last) of the
    finished bytes. Writing through a file object instead would publish a partial object when an
    exception (Ctrl-C) closes it half way.
    """
    if isinstance(fs, LocalFileSystem):
        temp = f"{os.path.dirname(path)}/{TEMP_PREFIX}{uuid.uuid4().hex}{os.path.splitext(path)[1]}"
        with open(temp, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    else:
        fs.pipe_file(path, data)


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


def _footer_and_columns(fs, path: str, columns: list[str] | None) -> tuple[pa.Schema, pa.Table]:
    """One part's schema and those of `columns` it has (all when None), through a reader that ends
    with the call."""
    with fs.open(path, "rb") as f:
        part = pq.ParquetFile(f)
        schema = part.schema_arrow
        return schema, part.read(columns=[c for c in columns if c in schema.names] if columns else None)


def read_parts(directory: str, columns: list[str] | None = None) -> pa.Table | None:
    """All parts with a `_part` column naming each row's file; None when there is none.

    Parts of different runs may differ in metadata columns or D; columns are unified permissively.
    """
    fs, _ = _fs(directory)
    tables = []
    for path in list_parts(directory):
        _, table = _footer_and_columns(fs, path, columns)
        tables.append(table.append_column("_part", pa.array([path] * table.num_rows, pa.string())))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


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
    rows = read_parts(directory, columns=[key_column, "video_id", "run_id"])
    stats = {"parts_rewritten": 0, "parts_deleted": 0, "rows_dropped": 0}
    if rows is None:
        return stats
    rows = rows.append_column("_keep", live_mask(rows, wanted_video_ids, key_column))
    fs, _ = _fs(directory)
    for part in sorted(set(rows["_part"].to_pylist())):
        in_part = rows.filter(pc.equal(rows["_part"], part))
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


def read_live(directory: str, key_column: str = "key", columns: list[str] | None = None) -> pa.Table | None:
    """The dataset as readers should see it: each video's newest rows, each key once (the same
    rows `compact` keeps, so this equals a plain read of a compacted dataset)."""
    rows = read_parts(directory, columns=columns)
    if rows is None:
        return None
    rows = rows.filter(live_mask(rows, None, key_column))
    return rows.drop_columns(["_part"])


# Parts read at once: hides an object store's round trips; each reader lives as long as its part.
PART_READERS = 8
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


def scan_live(directory: str, key_column: str = "key", status: str | None = None) -> LiveRows | None:
    """The rows `read_live` returns (only those with `status`, when given and the dataset has that
    column), without reading the vectors yet: memory grows by a few bytes per row, not by the width
    of a row. None when empty."""
    paths = list_parts(directory)
    if not paths:
        return None
    fs, _ = _fs(directory)
    small = [key_column, "video_id", "run_id", "status"]
    schemas, models, tables = [], [], []
    with ThreadPoolExecutor(PART_READERS, thread_name_prefix="footer") as pool:
        for i, (schema, table) in enumerate(pool.map(lambda path: _footer_and_columns(fs, path, small), paths)):
            if not any(schema.equals(seen, check_metadata=True) for seen in schemas):
                schemas.append(schema)  # parts of one run share a schema: a few distinct ones
            models.append((schema.metadata or {}).get(b"vidx.model"))
            tables.append(table.append_column("_part", pa.array(np.full(table.num_rows, i, np.int32))))
    # Parts of different runs may differ in metadata columns: unified permissively, as read_parts
    # does; a part without `status` reads it as null.
    rows = pa.concat_tables(tables, promote_options="permissive")
    rows = rows.filter(live_mask(rows, None, key_column))
    if status and "status" in rows.column_names:
        rows = rows.filter(pc.equal(rows["status"], status))
    return LiveRows(paths, fs, pa.unify_schemas(schemas, promote_options="permissive"),
                    rows.select([key_column, "run_id", "_part"]).combine_chunks(), key_column, models)

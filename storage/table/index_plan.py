"""Plan an index run: which videos to encode, which to reuse, which only need new metadata; and the
rewrite of those whose metadata alone changed.

Columnar throughout (Arrow compute over the manifest and the stored rows' planning columns), so the
driver's memory follows the columns it needs, not a Python object per video.

A video is reused when its stored rows have the same uri, file stamp (storage.table.files.list_stamps),
model fingerprint and --segment-seconds, and none of them is an error to retry: an error whose
cause was transient (a timeout, throttling, a dropped connection) is always tried again; a
permanent one (a corrupt file) only when the file changes or with --retry-errors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.schema import CAPTION_KEY, KEY_SEPARATOR, VIDEO_KEY, metadata_columns

from .dataset import PartRows, conform, live_mask, read_part_rows, same_values, write_part
from .files import list_stamps
from .live_rows import rows_of

logger = logging.getLogger(__name__)

# Stored columns that decide reuse (besides the metadata columns).
PLAN_COLUMNS = [VIDEO_KEY, "video_id", "uri", "file_stat", "model_fingerprint", "segment_seconds", "status",
                "error_kind", "run_id"]
CAPTION_PLAN_COLUMNS = [CAPTION_KEY, "video_id", "text", "model_fingerprint", "run_id"]
# What the steps after the plan (compaction, then the nightly's load) take from what it read.
KEPT_COLUMNS = [VIDEO_KEY, CAPTION_KEY, "video_id", "run_id", "status"]
ENCODE_COLUMNS = ["_row", "video_id", "uri", "file_stat"]


@dataclass
class Plan:
    encode: pa.Table  # ENCODE_COLUMNS: the videos to decode and encode (_row: their manifest row)
    refresh: pa.Array  # manifest rows whose stored rows get new metadata, no encoding
    reused: int  # videos kept as they are
    changed: int  # videos in `encode` that had rows before
    errors_retried: int  # of those, videos whose rows were errors
    deleted: list[str]  # video_ids with rows, gone from the manifest
    refresh_rows: pa.Table  # the stored live rows of the `refresh` videos (key, run_id, _part of videos_read)
    videos_read: PartRows | None  # the stored videos' planning columns, every part's
    captions: pa.Table  # caption_id, video_id, text: captions to encode
    captions_reused: int
    captions_read: PartRows | None



def _equals(column: pa.ChunkedArray, value) -> pa.ChunkedArray:
    return pc.is_null(column) if value is None else pc.fill_null(pc.equal(column, value), False)


def _ids(table: pa.Table, mask=None) -> pa.Array:
    """The distinct video_ids of the rows in `mask` (all rows without one)."""
    ids = table["video_id"] if mask is None else table["video_id"].filter(mask)
    return pc.unique(ids)


def _stored_rows(directory: str, columns: list[str], key_column: str) -> tuple[PartRows | None, pa.Table | None]:
    """Every part's `columns` (kept for the steps after the plan: no part is read twice), and the
    live rows among them, with their `_part`."""
    part_rows = read_part_rows(directory, columns)
    if part_rows is None:
        return None, None
    stored = part_rows.rows.filter(live_mask(part_rows.rows, None, key_column))
    part_rows = part_rows.select(KEPT_COLUMNS)
    if stored.num_rows == 0:
        return part_rows, None
    if "error_kind" in columns and "error_kind" not in stored.column_names:  # written before error kinds
        stored = stored.append_column("error_kind", pa.nulls(stored.num_rows, pa.string()))
    return part_rows, stored


def _current_rows(manifest: pa.Table) -> pa.Table:
    """The manifest's videos as the plan compares them: ids, uris, metadata, each file's stamp and
    its manifest row (`_row`)."""
    current = manifest.select(["video_id", "uri", *metadata_columns(manifest.column_names)])
    current = current.append_column("_row", pa.array(np.arange(current.num_rows)))
    return current.append_column("file_stat", list_stamps(manifest["uri"]))


def _reusable(stored: pa.Table, now: pa.Table, model_fingerprint: str, segment_seconds: float | None,
              retry: pa.ChunkedArray) -> pa.ChunkedArray:
    """Stored rows whose encoding still holds: same uri and file stamp, same model and segments,
    and not an error to retry."""
    same_file = pc.and_(same_values(stored["uri"], now["uri"]), same_values(stored["file_stat"], now["file_stat"]))
    same_encoding = pc.and_(_equals(stored["model_fingerprint"], model_fingerprint),
                            _equals(stored["segment_seconds"], segment_seconds))
    return pc.and_(pc.and_(same_file, same_encoding), pc.invert(retry))


def _metadata_differs(stored: pa.Table, now: pa.Table, meta: list[str]) -> pa.ChunkedArray:
    """Stored rows whose metadata differs from the manifest's, or that lack one of its columns."""
    missing = [c for c in meta if c not in stored.column_names]
    differs = pa.array(np.full(stored.num_rows, bool(missing)))
    for c in meta:
        if c not in missing:
            differs = pc.or_(differs, pc.invert(same_values(stored[c], now[c])))
    return differs


def plan_videos(manifest: pa.Table, videos_dir: str, model_fingerprint: str, segment_seconds: float | None,
                retry_errors: bool = False) -> dict:
    """The video half of a Plan, as keyword arguments."""
    meta = metadata_columns(manifest.column_names)
    current = _current_rows(manifest)
    part_rows, stored = _stored_rows(videos_dir, PLAN_COLUMNS + meta, VIDEO_KEY)
    if stored is None:
        return {"encode": current.select(ENCODE_COLUMNS), "refresh": pa.array([], pa.int64()), "reused": 0,
                "changed": 0, "errors_retried": 0, "deleted": [], "videos_read": part_rows,
                "refresh_rows": pa.table({VIDEO_KEY: pa.array([], pa.string()), "run_id": pa.array([], pa.string()),
                                          "_part": pa.array([], pa.int32())})}

    # Each stored row beside the manifest's row for its video (none: the video was deleted).
    position = pc.index_in(stored["video_id"], value_set=current["video_id"].combine_chunks())
    deleted = _ids(stored, pc.is_null(position))
    stored = stored.filter(pc.is_valid(position))
    now = current.take(position.filter(pc.is_valid(position)))

    retry = pc.and_(pc.equal(stored["status"], "error"),
                    pa.scalar(True) if retry_errors else _equals(stored["error_kind"], "transient"))
    stale = _ids(stored, pc.invert(_reusable(stored, now, model_fingerprint, segment_seconds, retry)))
    had_rows = pc.is_in(current["video_id"], value_set=_ids(stored))
    redo = pc.is_in(current["video_id"], value_set=stale)
    encode = pc.or_(pc.invert(had_rows), redo)
    # Reused videos whose metadata differs are only rewritten.
    refresh = pc.and_(pc.invert(encode),
                      pc.is_in(current["video_id"], value_set=_ids(stored, _metadata_differs(stored, now, meta))))
    refresh_ids = current["video_id"].filter(refresh).combine_chunks()
    return {
        "encode": current.filter(encode).select(ENCODE_COLUMNS),
        "refresh": current["_row"].filter(refresh).combine_chunks(),
        "refresh_rows": stored.filter(pc.is_in(stored["video_id"], value_set=refresh_ids))
                              .select([VIDEO_KEY, "run_id", "_part"]),
        "videos_read": part_rows,
        "reused": pc.sum(pc.and_(pc.invert(encode), pc.invert(refresh))).as_py() or 0,
        "changed": pc.sum(pc.and_(had_rows, redo)).as_py() or 0,
        "errors_retried": len(_ids(stored, retry)),
        "deleted": sorted(deleted.to_pylist()),
    }


def plan_captions(manifest: pa.Table, captions_dir: str, model_fingerprint: str) -> dict:
    """The caption half of a Plan: a video's captions are reused when the stored ones are exactly
    its texts, encoded by this model."""
    texts = manifest["captions"].combine_chunks()
    counts = pc.list_value_length(texts)
    parent = pc.list_parent_indices(texts)
    first = pc.subtract(pc.take(texts.offsets, parent), texts.offsets[0])  # flat index of each video's #0
    video_ids = manifest["video_id"].combine_chunks().take(parent)
    wanted = pa.table({
        CAPTION_KEY: pc.binary_join_element_wise(
            video_ids, pc.subtract(pa.array(np.arange(len(parent))), first).cast(pa.string()), KEY_SEPARATOR),
        "video_id": video_ids, "text": pc.list_flatten(texts)})
    part_rows, stored = _stored_rows(captions_dir, CAPTION_PLAN_COLUMNS, CAPTION_KEY)
    if stored is None:
        return {"captions": wanted, "captions_reused": 0, "captions_read": part_rows}
    position = pc.index_in(wanted[CAPTION_KEY], value_set=stored[CAPTION_KEY].combine_chunks())
    found = stored.take(pc.fill_null(position, 0))
    same = pc.and_(pc.is_valid(position), pc.and_(same_values(found["text"], wanted["text"]),
                                                  _equals(found["model_fingerprint"], model_fingerprint)))
    per_video = stored.group_by("video_id").aggregate([(CAPTION_KEY, "count")])
    stored_counts = pc.fill_null(per_video[f"{CAPTION_KEY}_count"].take(
        pc.index_in(manifest["video_id"], value_set=per_video["video_id"].combine_chunks())), 0)
    reused = pc.and_(pc.and_(pc.greater(counts, 0), pc.equal(stored_counts, counts)),
                     pc.invert(pc.is_in(manifest["video_id"], value_set=_ids(wanted, pc.invert(same)))))
    reused_ids = manifest["video_id"].filter(reused).combine_chunks()
    return {"captions": wanted.filter(pc.invert(pc.is_in(wanted["video_id"], value_set=reused_ids))),
            "captions_reused": pc.sum(counts.filter(reused)).as_py() or 0, "captions_read": part_rows}


def make_plan(manifest: pa.Table, videos_dir: str, captions_dir: str, model_fingerprint: str,
              segment_seconds: float | None, retry_errors: bool = False) -> Plan:
    plan = Plan(**plan_videos(manifest, videos_dir, model_fingerprint, segment_seconds, retry_errors),
                **plan_captions(manifest, captions_dir, model_fingerprint))
    logger.info(
        "plan: %d to encode (%d of them changed, %d error rows retried), %d reused, %d metadata-only, %d deleted; "
        "captions: %d to encode, %d reused", plan.encode.num_rows, plan.changed, plan.errors_retried, plan.reused,
        len(plan.refresh), len(plan.deleted), plan.captions.num_rows, plan.captions_reused,
    )
    return plan


def refresh_metadata(plan: Plan, metadata: pa.Table, videos_dir: str, schema: pa.Schema, run_id: str,
                     rows_per_part: int) -> int:
    """Rewrite the stored rows of the videos whose metadata alone changed (plan.refresh, rows of the
    manifest's `metadata`) in `schema`, under `run_id`: no decoding, no encoding. Only the parts
    holding them are read, a batch of rows at a time. Returns the rows written."""
    refreshed = metadata.take(plan.refresh)
    ids = refreshed["video_id"].combine_chunks()
    stored = rows_of(plan.videos_read, plan.refresh_rows, videos_dir, VIDEO_KEY)
    written = 0
    for batch in stored.batches(stored.schema.names, rows_per_part):
        taken = refreshed.take(pc.index_in(batch["video_id"], value_set=ids))
        columns = {name: batch[name] for name in batch.column_names}
        columns.update({name: taken[name] for name in metadata_columns(metadata.column_names)})
        columns["run_id"] = pa.array([run_id] * batch.num_rows, pa.string())
        write_part(conform(columns, batch.num_rows, schema), videos_dir, VIDEO_KEY)
        written += batch.num_rows
    return written

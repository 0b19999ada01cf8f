"""Plan a duplicates run: what it reads (the live video rows, the stored pairs), which videos to
compare with the whole library, which stored pairs stay; and what it leaves beside the pairs.

Under OUTPUT/duplicates: `pairs/` (parts, one row per pair of videos, superseded pair by pair),
`groups.parquet` (each video of a pair and its group) and `compared.parquet`, the record of the
video rows (video_id, run_id) the pairs were found among, with the settings in its footer. Against
that record the next run finds the videos new or re-encoded since (compared with the whole library)
and those removed (their pairs dropped); other settings compare everything again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from errors import UserError
from storage.schema import (DUPLICATES, DUPLICATING_KEY, GROUP_FIELDS, KEY_SEPARATOR, PAIR_KEY, SCORE, VIDEO_KEY,
                            VIDEOS)

from .atomic import publish_table, read_published_table
from .dataset import PartRows, live_mask, read_part_rows
from .duplicate_pairs import RowPairs
from .live_rows import LiveRows, live_table, rows_of

PAIRS = "pairs"
GROUPS = "groups.parquet"
COMPARED = "compared.parquet"
# The columns of a video row a pair reports, beside its vector.
ROW_COLUMNS = {VIDEO_KEY: pa.string(), "video_id": pa.string(), "segment": pa.int32(), "start_s": pa.float64(),
               "run_id": pa.string()}
STORED_PAIR_COLUMNS = [PAIR_KEY, "video_id", "duplicate_id", "run_id"]


def pairs_directory(root: str) -> str:
    return f"{root}/{DUPLICATES}/{PAIRS}"


@dataclass
class Library:
    """The live 'ok' video rows: to read their vectors (`live`), and each row's columns of ROW_COLUMNS
    (`rows`, in the order `live` reads them), video (numbered in video_id order) and segment."""

    live: LiveRows
    rows: pa.Table
    videos: np.ndarray  # int64, by row
    segments: np.ndarray  # int64, by row (0 where null: whole videos)

    def rows_of(self, video_ids: pa.Array) -> np.ndarray:
        """The numbers of the rows of `video_ids`, ascending."""
        return np.flatnonzero(pc.is_in(self.rows["video_id"], value_set=video_ids).to_numpy(zero_copy_only=False))


def read_library(root: str) -> Library:
    directory = f"{root}/{VIDEOS}"
    part_rows = read_part_rows(directory, [*ROW_COLUMNS, "status"])
    if part_rows is None:
        raise UserError(f"{root}: no video rows to compare; run vidx index first")
    rows = live_table(part_rows, VIDEO_KEY, "ok")
    if rows.num_rows == 0:
        raise UserError(f"{root}: no 'ok' video rows to compare")
    live = rows_of(part_rows, rows, directory, VIDEO_KEY)
    rows = pa.table({name: rows[name].cast(kind) if name in rows.column_names else pa.nulls(rows.num_rows, kind)
                     for name, kind in ROW_COLUMNS.items()})
    ids = pc.unique(rows["video_id"])
    ids = ids.take(pc.sort_indices(ids))
    videos = pc.index_in(rows["video_id"], value_set=ids).to_numpy().astype(np.int64)
    segments = pc.fill_null(rows["segment"], 0).to_numpy().astype(np.int64)
    return Library(live, rows, videos, segments)


@dataclass
class StoredPairs:
    part_rows: PartRows | None  # the parts' small columns, as compaction reuses them
    live: pa.Table  # the live pairs: STORED_PAIR_COLUMNS


def read_stored_pairs(directory: str) -> StoredPairs:
    part_rows = read_part_rows(directory, STORED_PAIR_COLUMNS)
    if part_rows is None:
        return StoredPairs(None, pa.table({c: pa.array([], pa.string()) for c in STORED_PAIR_COLUMNS}))
    live = part_rows.rows.filter(live_mask(part_rows.rows, None, PAIR_KEY))
    return StoredPairs(part_rows, live.select(STORED_PAIR_COLUMNS))


def read_compared(root: str) -> pa.Table | None:
    """The video rows (video_id, run_id) the last finished run compared, its settings in the
    schema's metadata; None when no run finished."""
    return read_published_table(f"{root}/{DUPLICATES}/{COMPARED}")


def settings_of(compared: pa.Table) -> dict:
    return json.loads(compared.schema.metadata[DUPLICATING_KEY.encode()])


def write_compared(root: str, rows: pa.Table, settings: dict) -> None:
    """Written last: a crash before it leaves the old record, and the next run compares the same
    videos again (their pairs replace those it wrote, key by key)."""
    compared = rows.group_by(["video_id", "run_id"], use_threads=False).aggregate([]).sort_by("video_id")
    publish_table(f"{root}/{DUPLICATES}", COMPARED,
             compared.replace_schema_metadata({DUPLICATING_KEY: json.dumps(settings, sort_keys=True)}))


def read_groups(root: str) -> pa.Table | None:
    """Each video of a pair and its group (schema.GROUP_FIELDS); None before the first run."""
    return read_published_table(f"{root}/{DUPLICATES}/{GROUPS}")


def write_groups(root: str, groups: pa.Table) -> bool:
    """Publish `groups` unless the stored groups are the same; whether it was written."""
    stored = read_groups(root)
    if stored is not None and stored.cast(pa.schema(GROUP_FIELDS)).equals(groups):
        return False
    publish_table(f"{root}/{DUPLICATES}", GROUPS, groups)
    return True


@dataclass
class DuplicatePlan:
    compared: pa.Array  # video_ids to compare with the whole library: new and re-encoded ones, or all
    removed: pa.Array  # video_ids compared before and gone now
    kept: pa.Table  # the stored pairs that stay (STORED_PAIR_COLUMNS)
    full: bool  # nothing usable was stored: every video is compared

    @property
    def changes(self) -> bool:
        return bool(self.full or len(self.compared) or len(self.removed))


def _video_runs(table: pa.Table) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(table["video_id"], table["run_id"], "\x1f")


def plan_duplicates(rows: pa.Table, compared: pa.Table | None, settings: dict, stored: pa.Table) -> DuplicatePlan:
    """`rows`: video_id and run_id of every live video row; `compared`: the last run's record;
    `stored`: the live stored pairs. Which videos to compare, which pairs stay."""
    ids = pc.unique(rows["video_id"])
    if compared is None or settings_of(compared) != settings:
        return DuplicatePlan(ids, pa.array([], pa.string()), stored.slice(0, 0), True)
    changed = pc.invert(pc.is_in(_video_runs(rows), value_set=_video_runs(compared).combine_chunks()))
    new = pc.unique(rows["video_id"].filter(changed))
    removed = pc.unique(compared["video_id"].filter(pc.invert(pc.is_in(compared["video_id"], value_set=ids))))
    gone = pa.concat_arrays([new.cast(pa.string()), removed.cast(pa.string())])
    touched = pc.or_(pc.is_in(stored["video_id"], value_set=gone), pc.is_in(stored["duplicate_id"], value_set=gone))
    return DuplicatePlan(new, removed, stored.filter(pc.invert(touched)), False)


def pair_rows(pairs: RowPairs, rows: pa.Table, fingerprint: str, run_id: str, schema: pa.Schema) -> pa.Table:
    """The rows to store (schema.PAIR_FIELDS) of video pairs `pairs` (row numbers of `rows`, the
    smaller video's first)."""
    first, second, n = rows.take(pa.array(pairs.first)), rows.take(pa.array(pairs.second)), len(pairs)
    return pa.table({
        PAIR_KEY: pc.binary_join_element_wise(first["video_id"], second["video_id"], KEY_SEPARATOR),
        "video_id": first["video_id"], "duplicate_id": second["video_id"], SCORE: pa.array(pairs.score),
        "segment": first["segment"], "start_s": first["start_s"],
        "duplicate_segment": second["segment"], "duplicate_start_s": second["start_s"],
        "model_fingerprint": pa.array([fingerprint] * n, pa.string()), "run_id": pa.array([run_id] * n, pa.string()),
    }, schema=schema)

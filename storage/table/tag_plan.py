"""Plan a tag run: what it reads (the corpus' vectors, the live video rows), which videos to score
against every text, which against the added texts only.

A tag run records the texts it scored (text_id and the run that encoded each) and the settings it
tagged with beside the tags (SCORED_TEXTS, not a part): the one record of a corpus' tag settings,
which the next run and the load read. Against it the next run finds texts added and texts removed
or re-encoded, and against the tags' `video_run_id` the videos re-encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from errors import UserError
from storage.schema import (EMBEDDING, SCORE, TAG_FIELDS, TAG_KEY, TAGGING_KEY, TEXT_KEY, TEXTS, VIDEO_KEY, VIDEOS,
                            check_corpus_name)

from .atomic import publish_in
from .dataset import filesystem, live_mask, read_part_rows
from .live_rows import LiveRows, live_table, rows_of

# The texts a tag run scored, in the tags directory (list_parts skips it: it is not a part).
SCORED_TEXTS = "scored_texts.parquet"


@dataclass
class Corpus:
    """A corpus' live texts and their vectors, as a tag run scores them."""

    name: str
    texts: pa.Table  # text_id, text, run_id: sorted by text_id (ties go to the first)
    matrix: np.ndarray  # (T, D) float32, in that order
    model: dict


def read_corpus_vectors(root: str, texts: str) -> Corpus:
    """A corpus by NAME (OUTPUT/texts/NAME) or directory, with its vectors: its parts read once."""
    directory = texts.rstrip("/") if "/" in texts else f"{root}/{TEXTS}/{texts}"
    name = check_corpus_name(directory.rsplit("/", 1)[-1])
    part_rows = read_part_rows(directory, [TEXT_KEY, "text", "run_id", EMBEDDING])
    rows = live_table(part_rows, TEXT_KEY, None) if part_rows is not None else None
    if rows is None or rows.num_rows == 0:
        raise UserError(f"{directory}: no texts; encode a corpus first (vidx texts --input FILE --output {root})")
    model = rows_of(part_rows, rows, directory, TEXT_KEY).model()
    rows = rows.sort_by(TEXT_KEY)
    matrix = np.stack(rows[EMBEDDING].to_numpy(zero_copy_only=False)).astype(np.float32)
    return Corpus(name, rows.select([TEXT_KEY, "text", "run_id"]), matrix, model)


def read_video_rows(root: str) -> tuple[LiveRows, pa.Table]:
    """The live 'ok' video rows: to read their vectors, and their key, video_id and run_id."""
    directory = f"{root}/{VIDEOS}"
    part_rows = read_part_rows(directory, [VIDEO_KEY, "video_id", "run_id", "status"])
    if part_rows is None:
        raise UserError(f"{root}: no video rows to tag; run vidx index first")
    rows = live_table(part_rows, VIDEO_KEY, "ok")
    if rows.num_rows == 0:
        raise UserError(f"{root}: no 'ok' video rows to tag")
    return rows_of(part_rows, rows, directory, VIDEO_KEY), rows


def rows_of_videos(live: LiveRows, videos: pa.Table, ids: pa.Array) -> LiveRows:
    """The rows of `live` (whose key, video_id... are `videos`, in the same order) of videos `ids`."""
    return replace(live, rows=live.rows.filter(pc.is_in(videos["video_id"], value_set=ids)))


@dataclass
class StoredTags:
    rows: pa.Table | None  # the live tag rows
    scored: pa.Table | None  # text_id, run_id: the texts they were scored against
    same_settings: bool


@dataclass
class TagPlan:
    full: pa.Array  # video_ids scored against every text
    merged: pa.Array  # video_ids scored against the added texts, merged with their stored tags
    added: np.ndarray  # corpus rows (texts) not scored before: every one when nothing is stored
    removed: int  # texts scored before, now gone or re-encoded
    stored: pa.Table | None  # the merged videos' stored tags: video_id, segment, video_run_id, _text, score

    @property
    def texts_changed(self) -> bool:
        return bool(len(self.added) or self.removed)


def _pairs(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(a, b, "\x1f")


def plan_tags(videos: pa.Table, texts: pa.Table, stored: StoredTags) -> TagPlan:
    """`videos`: video_id and run_id of every live video row; `texts`: the corpus' text_id and
    run_id, in the order of its vectors. What to score, and against what."""
    ids = pc.unique(videos["video_id"])
    none = pa.array([], pa.string())
    if stored.rows is None or stored.scored is None or not stored.same_settings:
        return TagPlan(ids, none, np.arange(texts.num_rows), 0, None)
    now, before = _pairs(texts[TEXT_KEY], texts["run_id"]), _pairs(stored.scored[TEXT_KEY], stored.scored["run_id"])
    added = np.flatnonzero(pc.invert(pc.is_in(now, value_set=before)).to_numpy(zero_copy_only=False))
    removed = stored.scored[TEXT_KEY].filter(pc.invert(pc.is_in(before, value_set=now)))
    tags = stored.rows
    reencoded = pc.invert(pc.is_in(_pairs(videos["video_id"], videos["run_id"]),
                                   value_set=_pairs(tags["video_id"], tags["video_run_id"])))
    stale = pa.concat_arrays([videos["video_id"].filter(reencoded).combine_chunks(),
                              tags["video_id"].filter(pc.is_in(tags[TEXT_KEY], value_set=removed)).combine_chunks()])
    is_stale = pc.is_in(ids, value_set=stale)
    full = ids.filter(is_stale)
    if len(added) == 0:
        return TagPlan(full, none, added, len(removed), None)
    merged = ids.filter(pc.invert(is_stale))
    kept = tags.filter(pc.is_in(tags["video_id"], value_set=merged))
    kept = kept.append_column("_text", pc.index_in(kept[TEXT_KEY], value_set=texts[TEXT_KEY].combine_chunks()))
    return TagPlan(full, merged, added, len(removed),
                   kept.select(["video_id", "segment", "video_run_id", "_text", SCORE]))


def read_scored_texts(directory: str) -> pa.Table | None:
    """The texts the last finished tag run in `directory` scored, its settings in the schema's
    metadata; None when no run finished there."""
    fs, root = filesystem(directory)
    path = f"{root}/{SCORED_TEXTS}"
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return pq.read_table(f)


def settings_of(scored: pa.Table) -> dict:
    return json.loads(scored.schema.metadata[TAGGING_KEY.encode()])


def stored_settings(directory: str) -> dict | None:
    """The settings the tags in `directory` were last made with; None when no run finished there."""
    scored = read_scored_texts(directory)
    return None if scored is None else settings_of(scored)


def read_stored_tags(directory: str, settings: dict) -> StoredTags:
    part_rows, scored = read_part_rows(directory, [f.name for f in TAG_FIELDS]), read_scored_texts(directory)
    if part_rows is None or scored is None:
        return StoredTags(None, None, False)
    live = part_rows.rows.filter(live_mask(part_rows.rows, None, TAG_KEY))
    return StoredTags(live, scored, settings_of(scored) == settings)


def write_scored_texts(directory: str, texts: pa.Table, settings: dict) -> None:
    """Written after the tags: a crash before it leaves the old record, and the next run scores the
    added texts again (merging is idempotent: a text's best score per video is kept once)."""
    table = texts.select([TEXT_KEY, "run_id"]).replace_schema_metadata(
        {TAGGING_KEY: json.dumps(settings, sort_keys=True)})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    publish_in(directory, SCORED_TEXTS, buffer.getvalue().to_pybytes())

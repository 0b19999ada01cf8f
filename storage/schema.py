"""The index's schema, in one place: tables and their keys, row fields and types, the columns
each reader serves or reserves, the `vidx.*` keys in Parquet footers and collection properties,
collection names, and the limits of a result.

Everything that makes, writes, loads or serves a row imports these names: the workers and the
sink (jobs), the dataset and its manifests, the versioned collections, the SQL-like dialect, and
the server.
"""

from __future__ import annotations

import json
import re

import pyarrow as pa

from errors import UserError

# Tables: directories under an index's OUTPUT, and the default collection (alias) of each.
VIDEOS = "videos"
CAPTIONS = "captions"
TABLES = (VIDEOS, CAPTIONS)
# Text corpora (`vidx texts`): OUTPUT/texts/NAME, served as collection NAME; the tags of a corpus
# (`vidx tag`): OUTPUT/tags/NAME, served as the videos' list column NAME.
TEXTS = "texts"
TAGS = "tags"
# Near-duplicates (`vidx duplicates`): OUTPUT/duplicates/pairs (one row per pair of videos), their
# groups (OUTPUT/duplicates/groups.parquet) and the record of the video rows compared.
DUPLICATES = "duplicates"
# The primary key of each table.
VIDEO_KEY = "key"  # video_id#segment
CAPTION_KEY = "caption_id"  # video_id#n
TEXT_KEY = "text_id"  # the corpus' own id, else the text itself
TAG_KEY = "tag_key"  # video_id#segment#rank
PAIR_KEY = "pair_key"  # video_id#duplicate_id
# By a table's key: the column whose newest run supersedes its older rows (storage.table.dataset.live_mask).
GROUP_COLUMN = {VIDEO_KEY: "video_id", CAPTION_KEY: "video_id", TEXT_KEY: TEXT_KEY, TAG_KEY: "video_id",
                PAIR_KEY: PAIR_KEY}
KEY_SEPARATOR = "#"
EMBEDDING = "embedding"
SCORE = "score"  # the similarity of a result row; never stored

# One row per video, or per segment of a long video. Metadata columns go between these and
# the embedding.
VIDEO_FIELDS = [
    pa.field(VIDEO_KEY, pa.string(), nullable=False),
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
    pa.field(CAPTION_KEY, pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("model_fingerprint", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
]
# One row per text of a corpus; metadata columns (`category`) go between these and the embedding.
TEXT_FIELDS = [
    pa.field(TEXT_KEY, pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("model_fingerprint", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
]
# One row per video (or segment) and rank: its k best texts of a corpus. No vectors.
TAG_FIELDS = [
    pa.field(TAG_KEY, pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("segment", pa.int32()),  # the segment scored (--per-segment), else the video's best one
    pa.field(TEXT_KEY, pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field(SCORE, pa.float64(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),  # 1 is the best
    pa.field("video_run_id", pa.string(), nullable=False),  # the run that wrote the video row scored
    pa.field("model_fingerprint", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
]
# One row per pair of distinct videos at least as similar as a threshold, each pair once
# (video_id < duplicate_id). No vectors.
PAIR_FIELDS = [
    pa.field(PAIR_KEY, pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("duplicate_id", pa.string(), nullable=False),
    pa.field(SCORE, pa.float64(), nullable=False),  # the inner product of their best-matching rows
    pa.field("segment", pa.int32()),  # video_id's row of that best match, and where it starts
    pa.field("start_s", pa.float64()),
    pa.field("duplicate_segment", pa.int32()),  # duplicate_id's
    pa.field("duplicate_start_s", pa.float64()),
    pa.field("model_fingerprint", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
]
# Each video in a group of near-duplicates (a connected component of the pairs), and the group's
# name: its smallest video_id.
DUPLICATE_GROUP = "duplicate_group"
GROUP_FIELDS = [pa.field("video_id", pa.string(), nullable=False),
                pa.field(DUPLICATE_GROUP, pa.string(), nullable=False)]
# The same for every row a run writes: the sink adds them, the steps before it never see them.
RUN_COLUMNS = ("model_fingerprint", "run_id")

# The manifest's own columns; any other manifest column is metadata, stored and served.
MANIFEST_COLUMNS = ("uri", "video_id", "captions")
# Names the job uses internally start with this; a manifest column may not.
INTERNAL_PREFIX = "_"
# Names a metadata column may not take: the dataset's own columns (uri and video_id are the
# manifest's), the vector and the score of a result, and the duplicate group a load serves.
RESERVED_COLUMNS = {f.name for f in VIDEO_FIELDS + CAPTION_FIELDS} - {"uri", "video_id"} | {EMBEDDING, SCORE,
                                                                                            DUPLICATE_GROUP}
# Columns every index row has; the others came from the manifest (the page shows those).
STANDARD_COLUMNS = {f.name for f in VIDEO_FIELDS + CAPTION_FIELDS + TEXT_FIELDS} | {EMBEDDING}
# Columns of a corpus file besides its metadata.
CORPUS_COLUMNS = (TEXT_KEY, "text")
# Not served: constant on served rows ("ok", no error), a setting of the run that wrote the row
# (null for whole videos; start_s and end_s give each row's span), or how the row was made (the
# sampled frames' times: a list no filter can use).
NOT_SERVED = ("status", "error", "error_kind", "segment_seconds", "sampled_times")

# What made the vectors: in each Parquet part's footer (bytes) and in each collection's
# properties. MODEL_KEY holds the model record as JSON; queries load that model and refuse a mismatch.
MODEL_KEY = "vidx.model"
DIM_KEY = "vidx.dim"
# The version served before this one (the chain retention walks) and a digest of the rows loaded.
PREVIOUS_KEY = "vidx.previous"
DIGEST_KEY = "vidx.digest"
# A collection follows its index night after night (storage/milvus/nights.py): each stored row
# version carries the night that wrote it and the night that superseded it, and the collection
# records the night it serves (published in one property write) and the one before (rollback).
ROW_VERSION = "_row"  # the primary key: the row's key, the run that wrote it, its tags
NIGHT_FROM = "_from"
NIGHT_TO = "_to"
NIGHT_COLUMNS = (ROW_VERSION, NIGHT_FROM, NIGHT_TO)
NIGHT_KEY = "vidx.night"
NIGHT_BEFORE_KEY = "vidx.night_before"
NIGHT_TS_KEY = "vidx.night_ts"  # the Milvus timestamp of the night's last write: readers ask as of it
# The videos a corpus collection is served beside (its ID('...') queries find them there), the
# corpora a videos collection has beside it, and in a corpus' record of its last tag run
# (storage/table/tag_plan.py) the settings that made its tags (top_k, min_score, per_segment).
VIDEOS_KEY = "vidx.videos"
CORPORA_KEY = "vidx.corpora"  # on a videos collection: the corpora served beside it (JSON list)
TAGGING_KEY = "vidx.tagging"
# The settings near-duplicates were found with (threshold, method, model), in their footers and record.
DUPLICATING_KEY = "vidx.duplicates"

# The most rows one search or query returns (k, LIMIT, OFFSET); a query without LIMIT that
# returns more is refused rather than cut.
MAX_RESULTS = 1000
# The most elements of a served list column: the texts `vidx tag --top-k` gives a video.
MAX_LIST = 1000
# The longest question: characters of a query caption, video id or uri, and of a statement or filter.
MAX_TEXT = 1_000
MAX_SQL = 10_000


def embedding_field(dim: int) -> pa.Field:
    return pa.field(EMBEDDING, pa.list_(pa.float32(), dim))


def footer_metadata(dim: int, model: dict) -> dict[bytes, bytes]:
    """What made these vectors, in each file's footer: the model record, and D."""
    return {DIM_KEY.encode(): str(dim).encode(), MODEL_KEY.encode(): json.dumps(model, sort_keys=True).encode()}


def video_schema(dim: int, metadata: pa.Schema, model: dict) -> pa.Schema:
    fields = VIDEO_FIELDS + [f for f in metadata if f.name not in MANIFEST_COLUMNS]
    return pa.schema(fields + [embedding_field(dim)], metadata=footer_metadata(dim, model))


def caption_schema(dim: int, model: dict) -> pa.Schema:
    return pa.schema(CAPTION_FIELDS + [embedding_field(dim)], metadata=footer_metadata(dim, model))


def text_schema(dim: int, metadata: pa.Schema, model: dict) -> pa.Schema:
    fields = TEXT_FIELDS + [f for f in metadata if f.name not in CORPUS_COLUMNS]
    return pa.schema(fields + [embedding_field(dim)], metadata=footer_metadata(dim, model))


def tag_schema(model: dict) -> pa.Schema:
    return pa.schema(TAG_FIELDS, metadata={MODEL_KEY.encode(): json.dumps(model, sort_keys=True).encode()})


def pair_schema(model: dict, settings: dict) -> pa.Schema:
    return pa.schema(PAIR_FIELDS, metadata={MODEL_KEY.encode(): json.dumps(model, sort_keys=True).encode(),
                                            DUPLICATING_KEY.encode(): json.dumps(settings, sort_keys=True).encode()})


def metadata_columns(names: list[str]) -> list[str]:
    """The metadata among a manifest's column names."""
    return [name for name in names if name not in MANIFEST_COLUMNS]


def row_key(video_id: str, n: int) -> str:
    """The key of a video's n-th segment, or the id of its n-th caption."""
    return f"{video_id}{KEY_SEPARATOR}{n}"


def caption_alias(alias: str) -> str:
    """The captions served beside the videos of `alias`: `captions` beside `videos`, else ALIAS_captions."""
    return CAPTIONS if alias == VIDEOS else f"{alias}_{CAPTIONS}"


# A corpus' name: a Milvus collection name and a column name.
CORPUS_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"


def corpus_alias(alias: str, corpus: str) -> str:
    """The corpus served beside the videos of `alias`: NAME beside `videos`, else ALIAS_NAME."""
    return corpus if alias == VIDEOS else f"{alias}_{corpus}"


def target_alias(alias: str, target: str) -> str:
    """What a search of `target` (videos, captions or a corpus NAME) beside the videos of `alias` reads."""
    if target == VIDEOS:
        return alias
    return caption_alias(alias) if target == CAPTIONS else corpus_alias(alias, target)


def check_corpus_name(name: str) -> str:
    """A corpus name is a collection name (Milvus: a letter, then letters, digits, underscores) and
    a column of the videos it tags, so neither a table nor a column vidx has."""
    if not re.match(CORPUS_NAME, name):
        raise UserError(f"corpus name {name!r}: use a letter, then letters, digits or underscores (at most 64)")
    if name in TABLES or name in STANDARD_COLUMNS or name in RESERVED_COLUMNS:
        raise UserError(f"corpus name {name!r} is taken by vidx; choose another (--name)")
    return name


def video_alias(alias: str) -> str:
    """The videos whose captions `alias` serves (the inverse of caption_alias); `alias` itself when
    it serves videos."""
    if alias == CAPTIONS:
        return VIDEOS
    return alias.removesuffix(f"_{CAPTIONS}")


def version_name(alias: str, version: str) -> str:
    """The collection of one version of `alias`: `version` (a run id) made name-safe, as Milvus
    names are letters, digits and underscores."""
    return f"{alias}_{version.replace('-', '_').lower()}"


def is_version_of(name: str, alias: str) -> bool:
    """Whether collection `name` is a version of `alias`: ALIAS_ then a version (a run id made
    name-safe, `20261205t061502123456z_1a2b3c`, or a plain word), and not a version of another
    alias that starts with ALIAS_ (`ALIAS_captions_...`)."""
    return re.fullmatch(rf"{re.escape(alias)}_[0-9a-z]+(_[0-9a-f]{{6}})?", name) is not None

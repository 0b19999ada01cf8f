"""A collection that follows its index night after night: which row versions a reader sees.

Every stored row is a row version: its key, the run that wrote it and its tags make its primary
key (ROW_VERSION), and it carries the night that wrote it (NIGHT_FROM) and the night that
superseded it (NIGHT_TO, LIVE until one does). The collection records the night it serves in a
property, and when that night's last write was made (a server's reader asks as of it). A question
reads the rows of the night its one description of the collection names, `_from <= night < _to`:
a night's rows are written beside the served ones, invisible to readers, then published in one
property write, so a reader sees the whole night or none of it, and the night before stays one
property write away (rollback). How a night is written: night_publish.py.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

from storage.schema import NIGHT_BEFORE_KEY, NIGHT_FROM, NIGHT_KEY, NIGHT_TO, NIGHT_TS_KEY, ROW_VERSION

# NIGHT_TO of a row version no night has superseded (Milvus' INT64; no night gets near it).
LIVE = 2**62
# The night a collection built whole serves.
FIRST_NIGHT = 1
# Between a row version's parts: never in a key (storage/schema.py KEY_SEPARATOR is '#') or a run id.
PART_SEPARATOR = "@"
TAG_SEPARATOR = "\x1f"


def served_night(properties: dict[str, str]) -> int | None:
    """The night a collection serves; None for a collection whose rows carry no nights (built by a
    vidx before nights, or a corpus of texts): every row is served."""
    night = properties.get(NIGHT_KEY)
    return int(night) if night else None


def night_before(properties: dict[str, str]) -> int | None:
    """The night served before the current one, while its rows are kept (rollback)."""
    night = properties.get(NIGHT_BEFORE_KEY)
    return int(night) if night else None


def night_written_at(properties: dict[str, str]) -> int | None:
    """The Milvus timestamp of the served night's last write: a server answers a read as of it, so
    a reader that sees the night sees all of it (its default consistency reads as of a few seconds
    ago). None for a collection built whole: it is served only once loaded."""
    written = properties.get(NIGHT_TS_KEY)
    return int(written) if written else None


def visible(night: int) -> str:
    """The Milvus filter keeping the row versions served at `night`."""
    return f"{NIGHT_FROM} <= {night} and {NIGHT_TO} > {night}"


def visible_under(condition: str, night: int | None) -> str:
    """`condition` (a Milvus filter, "" for every row) among the rows served at `night`."""
    if night is None:
        return condition
    return f"({condition}) and {visible(night)}" if condition else visible(night)


def row_versions(rows: pa.Table, key: str, tag_columns: list[str]) -> pa.Array:
    """Each row's version: its key and run (a new encoding or new metadata gets a new run id), and
    a digest of its tags when the collection serves tag columns (a tag run changes them alone; the
    duplicate group, a string column, is one of them: a duplicates run changes it alone)."""
    versions = pc.binary_join_element_wise(rows[key], rows["run_id"], PART_SEPARATOR)
    if not tag_columns:
        return versions.combine_chunks() if isinstance(versions, pa.ChunkedArray) else versions
    joined = [pc.binary_join(rows[column], TAG_SEPARATOR) if pa.types.is_list(rows[column].type) else rows[column]
              for column in tag_columns]
    tags = pc.binary_join_element_wise(*joined, "\x1e") if len(joined) > 1 else joined[0]
    digests = pa.array([hashlib.blake2b(text.encode(), digest_size=8).hexdigest() for text in tags.to_pylist()])
    return pc.binary_join_element_wise(versions, digests, PART_SEPARATOR).combine_chunks()


def stamped(rows: pa.Table, versions: pa.Array, night: int, superseded: int = LIVE) -> pa.Table:
    """`rows` as stored: their versions first, written at `night`, superseded at `superseded`."""
    count = rows.num_rows
    return (rows.add_column(0, ROW_VERSION, versions)
            .append_column(NIGHT_FROM, pa.array([night] * count, pa.int64()))
            .append_column(NIGHT_TO, pa.array([superseded] * count, pa.int64())))

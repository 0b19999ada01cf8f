"""The tags of `vidx tag`, and the groups of `vidx duplicates`, served as columns of the videos
they describe.

A corpus NAME's tags become column NAME of the videos collection: each row's texts, best first
(list<string>; a Milvus ARRAY of VARCHAR). `SELECT video_id FROM videos WHERE
array_contains(NAME, 'a dog')` filters by them in Milvus and on the exact copy alike, beside any
other condition and a similarity ranking. Per-video tags go on every segment of the video;
`--per-segment` tags on their own segment.

Once `vidx duplicates` has run, column `duplicate_group` (string) names each video's group (its
smallest video_id, OUTPUT/duplicates/groups.parquet); a video in no group is a group of its own,
named by its video_id, so `GROUP BY duplicate_group HAVING count(*) > 1` counts exactly the groups.
Like a tag, it is a column of every segment of the video, and part of a row's version: a night
serves a video again when its group changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from errors import UserError
from storage.schema import DUPLICATE_GROUP, KEY_SEPARATOR, TAG_KEY, TAGS, VIDEO_KEY

from .dataset import list_tables, live_mask, read_part_rows
from .digests import columns_digest, rows_digest
from .duplicate_plan import read_groups
from .tag_plan import stored_settings

TAG_LIST = pa.list_(pa.string())
TAG_COLUMNS_READ = [TAG_KEY, "video_id", "segment", "text", "rank", "run_id"]


def check_tag_column(corpus: str, video_columns: list[str]) -> None:
    """A corpus' tags (or the duplicate groups) become a column of the videos: refuse a name the videos
    already have (a manifest's)."""
    if corpus == DUPLICATE_GROUP and corpus in video_columns:
        raise UserError(f"the videos have a column {corpus!r} (a manifest's), which vidx reserves for the groups "
                        "of vidx duplicates: rename it in the manifest and index again")
    if corpus in video_columns:
        raise UserError(f"the tags of corpus {corpus!r} would be a column the videos already have: encode the "
                        "corpus under another name (vidx texts --name) and tag it again")


@dataclass(frozen=True)
class CorpusTags:
    """One corpus' tags: the texts of each video (or segment), best first."""

    name: str
    join_column: str  # "video_id", or the video row key for per-segment tags
    keys: pa.Array
    texts: pa.Array  # list<string>, one per key
    digest: str  # the tag rows' keys and runs: a new tag run changes it


def _corpus_tags(directory: str, name: str) -> CorpusTags | None:
    """A corpus' tags as its last finished tag run left them; None when no run finished."""
    settings, part_rows = stored_settings(directory), read_part_rows(directory, TAG_COLUMNS_READ)
    if settings is None or part_rows is None:
        return None
    rows = part_rows.rows.filter(live_mask(part_rows.rows, None, TAG_KEY))
    if settings["per_segment"]:
        join = VIDEO_KEY
        rows = rows.append_column(join, pc.binary_join_element_wise(
            rows["video_id"], rows["segment"].cast(pa.string()), KEY_SEPARATOR))
    else:
        join = "video_id"
    rows = rows.sort_by([(join, "ascending"), ("rank", "ascending")])
    grouped = rows.group_by(join, use_threads=False).aggregate([("text", "list")])  # keeps the rank order
    return CorpusTags(name, join, grouped[join].combine_chunks(), grouped["text_list"].combine_chunks(),
                      rows_digest(rows, TAG_KEY, {"corpus": name}))


@dataclass(frozen=True)
class DuplicateGroups:
    """The groups of `vidx duplicates`: each grouped video and its group's name."""

    video_ids: pa.Array
    groups: pa.Array
    digest: str  # of every (video_id, group): a change of group changes it

    @classmethod
    def of(cls, table: pa.Table) -> DuplicateGroups:
        table = table.sort_by("video_id")
        return cls(table["video_id"].combine_chunks(), table[DUPLICATE_GROUP].combine_chunks(),
                   columns_digest(table, ["video_id", DUPLICATE_GROUP], {"groups": DUPLICATE_GROUP}))


class TagColumns:
    """Every part_rows corpus of an index, and its duplicate groups, as columns to add to its video rows."""

    def __init__(self, corpora: list[CorpusTags], groups: DuplicateGroups | None = None):
        self.corpora, self.groups = corpora, groups

    @property
    def fields(self) -> list[pa.Field]:
        """The columns `attach` adds, in order: list<string> per corpus, then the group (string)."""
        groups = [pa.field(DUPLICATE_GROUP, pa.string())] if self.groups else []
        return [*(pa.field(corpus.name, TAG_LIST) for corpus in self.corpora), *groups]

    @property
    def digest(self) -> str:
        groups = [f"{DUPLICATE_GROUP}:{self.groups.digest}"] if self.groups else []
        return ",".join([*(f"{corpus.name}:{corpus.digest}" for corpus in self.corpora), *groups])

    def attach(self, batch: pa.Table) -> pa.Table:
        """`batch` (video rows with their key and video_id) with each corpus' column ([] where untagged)
        and the group's (the row's own video_id where in none)."""
        for corpus in self.corpora:
            position = pc.index_in(batch[corpus.join_column], value_set=corpus.keys)
            texts = corpus.texts.take(position)
            batch = batch.append_column(corpus.name, pc.if_else(pc.is_valid(position), texts, pa.scalar([], TAG_LIST)))
        if self.groups:
            video_ids = batch["video_id"].cast(pa.string())
            position = pc.index_in(video_ids, value_set=self.groups.video_ids)
            batch = batch.append_column(DUPLICATE_GROUP, pc.if_else(pc.is_valid(position),
                                                                    self.groups.groups.take(position), video_ids))
        return batch


def read_tag_columns(root: str) -> TagColumns:
    """The tags under OUTPUT/tags and the groups of OUTPUT/duplicates (none: no columns)."""
    found = (_corpus_tags(f"{root}/{TAGS}/{name}", name) for name in list_tables(f"{root}/{TAGS}"))
    groups = read_groups(root)
    return TagColumns([corpus for corpus in found if corpus is not None],
                      DuplicateGroups.of(groups) if groups is not None else None)

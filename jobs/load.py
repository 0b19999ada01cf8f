"""The load job: Parquet embeddings -> a new collection version, validated, then the alias swap.

Usage: python -m jobs load --embeddings DIR --db URI [--collection videos]
"""

from __future__ import annotations

from errors import UserError
from storage.dataset import TaggedRows
from storage.live_rows import scan_live
from storage.runs import new_run_id
from storage.schema import CAPTION_KEY, CAPTIONS, VIDEO_KEY, VIDEOS, caption_alias
from storage.vectorstore import VectorStore
from storage.versions import build_and_swap


def load(embeddings: str, db: str, collection: str = VIDEOS, skip_unchanged: bool = False,
         known: dict[str, TaggedRows | None] | None = None) -> dict:
    """Load OUTPUT/videos under alias `collection` (and OUTPUT/captions, when present, under its
    caption alias); returns what was swapped, by alias. `skip_unchanged`: keep a served version
    that already holds the same rows (see build_and_swap). `known`: each table's small columns as
    the index run that just ran left them (run_index), so no part is read twice."""
    root, known = embeddings.rstrip("/"), known or {}
    videos = scan_live(f"{root}/{VIDEOS}", VIDEO_KEY, status="ok", known=known.get(VIDEOS))
    if videos is None or videos.rows.num_rows == 0:
        raise UserError(f"{embeddings}: no 'ok' video rows to load")
    store = VectorStore(db)
    version = new_run_id()  # one for the videos and captions of this load
    result = {collection: build_and_swap(store, videos, collection, version, skip_unchanged)}
    captions = scan_live(f"{root}/{CAPTIONS}", CAPTION_KEY, known=known.get(CAPTIONS))
    if captions is not None and captions.rows.num_rows:
        alias = caption_alias(collection)
        result[alias] = build_and_swap(store, captions, alias, version, skip_unchanged)
    return result

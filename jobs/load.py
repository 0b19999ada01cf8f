"""The load job: Parquet embeddings -> a new collection version, validated, then the alias swap.

Usage: python -m jobs load --embeddings DIR --db URI [--collection videos]
"""

from __future__ import annotations

import json

from errors import UserError
from storage.table.corpus import check_same_model
from storage.table.dataset import TaggedRows, list_tables
from storage.table.live_rows import scan_live
from storage.table.runs import new_run_id
from storage.schema import (CAPTION_KEY, CAPTIONS, CORPORA_KEY, TEXT_KEY, TEXTS, VIDEO_KEY, VIDEOS, VIDEOS_KEY,
                            caption_alias, corpus_alias)
from storage.table.tag_columns import check_tag_column, read_tag_columns
from storage.milvus.store import VectorStore
from storage.milvus.versions import build_and_swap


def load(embeddings: str, db: str, collection: str = VIDEOS, skip_unchanged: bool = False,
         known: dict[str, TaggedRows | None] | None = None) -> dict:
    """Load OUTPUT/videos under alias `collection`, with the tags of `vidx tag` as list columns;
    OUTPUT/captions, when present, under its caption alias; each corpus OUTPUT/texts/NAME under
    its corpus alias. Returns what was swapped, by alias. `skip_unchanged`: keep a served version
    that already holds the same rows (see build_and_swap). `known`: each table's small columns as
    the index run that just ran left them (run_index), so no part is read twice."""
    root, known = embeddings.rstrip("/"), known or {}
    videos = scan_live(f"{root}/{VIDEOS}", VIDEO_KEY, status="ok", known=known.get(VIDEOS))
    if videos is None or videos.rows.num_rows == 0:
        raise UserError(f"{embeddings}: no 'ok' video rows to load")
    model, tags = videos.model(), read_tag_columns(root)
    for field in tags.fields:
        check_tag_column(field.name, videos.schema.names)
    corpora = {name: scan_live(f"{root}/{TEXTS}/{name}", TEXT_KEY) for name in list_tables(f"{root}/{TEXTS}")}
    corpora = {name: live for name, live in corpora.items() if live is not None and live.rows.num_rows}
    for name, live in corpora.items():  # before anything is built: a refused load changes nothing
        check_same_model(f"corpus {name!r}", live.model()["fingerprint"], model)
    store = VectorStore(db)
    version = new_run_id()  # one for every collection of this load
    result = {collection: build_and_swap(store, videos, collection, version, skip_unchanged,
                                         tags=tags if tags.corpora else None,
                                         properties={CORPORA_KEY: json.dumps(sorted(corpora))} if corpora else None)}
    captions = scan_live(f"{root}/{CAPTIONS}", CAPTION_KEY, known=known.get(CAPTIONS))
    if captions is not None and captions.rows.num_rows:
        alias = caption_alias(collection)
        result[alias] = build_and_swap(store, captions, alias, version, skip_unchanged)
    for name, live in corpora.items():
        alias = corpus_alias(collection, name)
        result[alias] = build_and_swap(store, live, alias, version, skip_unchanged,
                                       properties={VIDEOS_KEY: collection})
    return result

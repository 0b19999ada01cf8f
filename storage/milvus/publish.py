"""An index served: its videos (with their tags), captions and corpora, each as the next night of
the collection its alias serves, or a new version built from the live rows, validated, then
swapped in (versions.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from errors import UserError
from storage.schema import (CAPTION_KEY, CAPTIONS, CORPORA_KEY, TEXT_KEY, TEXTS, VIDEO_KEY, VIDEOS, VIDEOS_KEY,
                            caption_alias, corpus_alias)
from storage.table.corpus import check_same_model
from storage.table.dataset import PartRows, list_tables
from storage.table.live_rows import LiveRows, scan_live
from storage.table.runs import new_run_id
from storage.table.tag_columns import TagColumns, check_tag_column, read_tag_columns

from .store import VectorStore
from .versions import serve_rows


@dataclass
class IndexTables:
    """An index's live rows as a load serves them, checked before anything is built."""

    root: str
    videos: LiveRows
    tags: TagColumns
    captions: LiveRows | None
    corpora: dict[str, LiveRows]


def read_index(embeddings: str, known: dict[str, PartRows | None] | None = None) -> IndexTables:
    """OUTPUT/videos' live 'ok' rows with the tags of `vidx tag` as list columns, OUTPUT/captions and
    each corpus OUTPUT/texts/NAME; refused (a UserError) when there is nothing to serve or a corpus
    is of another model, so a refused load changes nothing. `known`: each table's small columns as
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
    for name, live in corpora.items():
        check_same_model(f"corpus {name!r}", live.model()["fingerprint"], model)
    captions = scan_live(f"{root}/{CAPTIONS}", CAPTION_KEY, known=known.get(CAPTIONS))
    served_captions = captions if captions is not None and captions.rows.num_rows else None
    return IndexTables(root, videos, tags, served_captions, corpora)


def publish_index(store: VectorStore, index: IndexTables, collection: str = VIDEOS, full: bool = False) -> dict:
    """Serve the videos under alias `collection`, the captions under its caption alias, each corpus
    under its corpus alias: each as the next night of the collection served, or built whole where
    that cannot follow the index (always with `full`; see serve_rows). Returns what each alias
    serves now."""
    version = new_run_id()  # one for every collection this load builds
    corpora = sorted(index.corpora)
    result = {collection: serve_rows(store, index.videos, collection, version, full,
                                     tags=index.tags if index.tags.fields else None,
                                     properties={CORPORA_KEY: json.dumps(corpora)} if corpora else None,
                                     index_root=index.root)}
    if index.captions is not None:
        alias = caption_alias(collection)
        result[alias] = serve_rows(store, index.captions, alias, version, full, index_root=index.root)
    for name, live in index.corpora.items():
        alias = corpus_alias(collection, name)
        result[alias] = serve_rows(store, live, alias, version, full, properties={VIDEOS_KEY: collection},
                                   index_root=index.root)
    return result

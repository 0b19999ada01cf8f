"""Serve the night before: each collection of an alias (videos, captions, corpora) back one night,
in one property write each (storage/milvus/night_publish.py)."""

from __future__ import annotations

import json

from storage.options import Options, collection_field, db_field
from storage.schema import VIDEOS


class Arguments(Options):
    db: str = db_field()
    collection: str = collection_field("the alias whose collections go back one night")


def rollback(db: str, collection: str = VIDEOS) -> dict:
    """Serve, for the videos of `collection` and the captions and corpora beside them, the night
    served before the current one; what each alias serves now."""
    from storage.milvus.night_publish import roll_back
    from storage.milvus.store import VectorStore
    from storage.schema import CORPORA_KEY, caption_alias, corpus_alias

    with VectorStore(db, create=False) as store:
        corpora = json.loads(store.described(collection).get("properties", {}).get(CORPORA_KEY, "[]"))
        aliases = [collection, caption_alias(collection), *(corpus_alias(collection, name) for name in corpora)]
        return {alias: roll_back(store, alias) for alias in aliases if store.describe(alias) is not None}


def run(arguments: Arguments) -> dict:
    return rollback(**arguments.model_dump())

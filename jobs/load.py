"""Parquet embeddings -> a new collection version per served table, validated, then the alias swapped."""

from __future__ import annotations

from pydantic import Field

from storage.options import Options, collection_field, db_field
from storage.schema import VIDEOS


class Arguments(Options):
    embeddings: str = Field(..., description="an index --output directory")
    db: str = db_field()
    collection: str = collection_field("the alias the new version is served under")


def load(embeddings: str, db: str, collection: str = VIDEOS) -> dict:
    """Serve the index at EMBEDDINGS from `db` under alias `collection` (captions and corpora beside
    it); what was swapped, by alias. Nothing is built when the index has nothing to serve."""
    from storage.milvus.publish import publish_index, read_index
    from storage.milvus.store import VectorStore

    index = read_index(embeddings)
    with VectorStore(db) as store:
        return publish_index(store, index, collection)


def run(arguments: Arguments) -> dict:
    return load(**arguments.model_dump())

"""Parquet embeddings -> what each alias serves: the next night of its collection (the work is what
changed), or a new collection version built whole, validated, then the alias swapped."""

from __future__ import annotations

from pydantic import Field

from storage.options import Options, collection_field, db_field
from storage.schema import VIDEOS


class Arguments(Options):
    embeddings: str = Field(..., description="an index --output directory")
    db: str = db_field()
    collection: str = collection_field("the alias the index is served under")
    full: bool = Field(False, description="build every collection whole, as a new version swapped in (what a "
                                          "first load, a new model or new columns do anyway)")


def load(embeddings: str, db: str, collection: str = VIDEOS, full: bool = False) -> dict:
    """Serve the index at EMBEDDINGS from `db` under alias `collection` (captions and corpora beside
    it); what each alias serves now. Nothing is written when the index has nothing to serve."""
    from storage.milvus.publish import publish_index, read_index
    from storage.milvus.store import VectorStore

    index = read_index(embeddings)
    with VectorStore(db) as store:
        return publish_index(store, index, collection, full)


def run(arguments: Arguments) -> dict:
    return load(**arguments.model_dump())

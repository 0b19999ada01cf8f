"""What a question may read: the collections (aliases) a database serves, described once per question."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import pyarrow as pa

from storage.milvus.exact_copy import ExactCopy
from storage.milvus.fields import scalar_schema
from storage.milvus.nights import night_written_at, served_night
from storage.milvus.store import VectorStore
from storage.schema import MODEL_KEY, TABLES, VIDEOS_KEY, video_alias


class ServedColumns(Mapping):
    """The scalar columns of each collection (alias) the database serves, asked for by name: the
    FROM name of a statement may be any collection a `vidx load --collection` made. Each alias is
    described once, so one question sees one version throughout (a swap may land between two)."""

    def __init__(self, store: VectorStore):
        self.store, self.described, self.columns = store, {}, {}

    def _description(self, name: str) -> dict:
        if name not in self.described:
            self.described[name] = self.store.describe(name)
        if self.described[name] is None:
            raise KeyError(name)
        return self.described[name]

    def __getitem__(self, name: str) -> set[str]:
        if name not in self.columns:
            self.columns[name] = set(self.schema(name, None).names)
        return self.columns[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name in TABLES if name in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def collection(self, name: str) -> str:
        """The collection (version) the alias names."""
        return self._description(name)["collection_name"]

    def exact_copy(self, name: str) -> ExactCopy | None:
        """The exact copy of the collection as served at its night (milvus-lite); None on a server."""
        return self.store.exact_copy(self.collection(name), self.night(name))

    def night(self, name: str) -> int | None:
        """The night the collection serves (storage/milvus/nights.py); None: it serves every row."""
        return served_night(self._description(name).get("properties", {}))

    def as_of(self, name: str) -> int | None:
        """The Milvus timestamp a read of the collection asks to see (nights.night_written_at)."""
        return night_written_at(self._description(name).get("properties", {}))

    def schema(self, name: str, columns: list[str] | None) -> pa.Schema:
        return scalar_schema(self._description(name), columns)

    def model(self, name: str) -> dict:
        """The record of the model that made the collection: its TEXT(..) and VIDEO(..) are encoded by it."""
        return json.loads(self._description(name).get("properties", {})[MODEL_KEY])

    def videos_of(self, name: str) -> str:
        """The videos whose ID('...') a question over `name` may name: a corpus records them."""
        return self._description(name).get("properties", {}).get(VIDEOS_KEY) or video_alias(name)

"""The query command: a SQL-like statement against the served collections.

Usage: python -m jobs query --db URI [--json] [--explain] [--param NAME=VALUE ...] "SELECT ..."
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from storage.schema import EMBEDDING, SCORE, TABLES, video_alias
from storage.sql import ParsedQuery, parse_query
from storage.vectorstore import VectorStore

from .search import VideoResolver, local_video, query_vector


class ServedColumns(Mapping):
    """The scalar columns of each collection (alias) the database serves, asked for by name: the
    FROM name of a statement may be any collection a `vidx load --collection` made."""

    def __init__(self, store: VectorStore):
        self.store, self.asked = store, {}  # one statement asks for its collection a few times

    def __getitem__(self, name: str) -> set[str]:
        if name not in self.asked:
            self.asked[name] = self.store.fields(name)
        if not self.asked[name]:
            raise KeyError(name)
        return self.asked[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name in TABLES if name in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def milvus_call(parsed: ParsedQuery) -> dict:
    """The Milvus call a statement becomes (what --explain prints)."""
    fields = [f for f in parsed.fields if f != SCORE] or ["*"]
    call = {"collection": parsed.table, "filter": parsed.filter, "output_fields": fields,
            "limit": parsed.limit, "offset": parsed.offset}
    if parsed.similarity:
        kind, value = parsed.similarity
        return {"method": "search", "query": f"{kind}({value!r})", "metric": "IP", **call}
    return {"method": "query", **call}


def run_query(db: str, sql: str, params: dict | None = None, explain: bool = False,
              store: VectorStore | None = None, videos: VideoResolver = local_video) -> list[dict] | dict:
    """Rows of a statement (or, with `explain`, the Milvus call it becomes). `store`: one to reuse;
    `videos`: what VIDEO(..) may open (see search.query_vector)."""
    store = store or VectorStore(db, create=False)
    parsed = parse_query(sql, ServedColumns(store), params)
    call = milvus_call(parsed)
    if explain:
        return call
    collection = store.resolve(parsed.table)
    if parsed.similarity:
        vector = query_vector(store, collection, *parsed.similarity, videos=videos,
                              video_collection=video_alias(parsed.table))
        rows = store.search(collection, vector, parsed.limit + parsed.offset, filter=parsed.filter,
                            output_fields=call["output_fields"])[parsed.offset:]
    else:
        rows = store.query(collection, filter=parsed.filter, output_fields=call["output_fields"],
                           limit=parsed.limit, offset=parsed.offset)
    if not parsed.fields:  # SELECT *: every stored column but the vector
        return [{k: v for k, v in row.items() if k != EMBEDDING} for row in rows]
    return [{k: row[k] for k in parsed.fields if k in row} for row in rows]  # in SELECT order

"""The query command: a SQL-like statement against the served collections.

Usage: python -m jobs query --db URI [--json] [--explain] [--param NAME=VALUE ...] "SELECT ..."
"""

from __future__ import annotations

import json

from pymilvus.exceptions import MilvusException

from storage.sql import TABLES, ParsedQuery, parse_query
from storage.vectorstore import VectorStore

from .errors import UserError
from .search import VideoResolver, local_video, query_vector


def served_columns(store: VectorStore) -> dict[str, set[str]]:
    """Filterable columns of each served collection; a collection not loaded yet is left out."""
    return {table: columns for table in TABLES if (columns := store.fields(table))}


def milvus_call(parsed: ParsedQuery) -> dict:
    """The Milvus call a statement becomes (what --explain prints)."""
    fields = [f for f in parsed.fields if f != "score"] or ["*"]
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
    store = store or VectorStore(db)
    parsed = parse_query(sql, served_columns(store), params)
    call = milvus_call(parsed)
    if explain:
        return call
    collection = store.resolve(parsed.table)
    try:
        if parsed.similarity:
            vector = query_vector(store, collection, *parsed.similarity, videos=videos)
            rows = store.search(collection, vector, parsed.limit + parsed.offset, filter=parsed.filter,
                                output_fields=call["output_fields"])[parsed.offset:]
        else:
            rows = store.query(collection, filter=parsed.filter, output_fields=call["output_fields"],
                               limit=parsed.limit, offset=parsed.offset)
    except MilvusException as e:
        raise UserError(f"Milvus refused {json.dumps(call)}: {e.message}") from e
    if not parsed.fields:  # SELECT *: every stored column but the vector
        return [{k: v for k, v in row.items() if k != "embedding"} for row in rows]
    return [{k: row[k] for k in parsed.fields if k in row} for row in rows]  # in SELECT order

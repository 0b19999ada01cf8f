"""The query command: a SQL-like statement against the served collections.

Usage: python -m jobs query --db URI [--format table|json|csv|parquet] [--explain] [--param NAME=VALUE ...] "SELECT ..."

A statement runs in two steps (storage/sql/statement.py): its source, then its relational step.
The source is Milvus' count(*), a top-k vector search, or a scan of every row the filter keeps;
on milvus-lite, searches and scans read the collection's exact copy (storage/flat_copy.py) and
are exact under any filter; on a server, a search is Milvus' own (HNSW) and a scan streams the
rows through a query iterator. DuckDB then runs the statement over the source's rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from storage.relational import run_relational
from storage.schema import EMBEDDING, MAX_RESULTS, SCORE, TABLES, video_alias
from storage.sql import COUNT, SCAN, TOP_K, ParsedQuery, QueryError, parse_query
from storage.vectorstore import RowStream, VectorStore

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


def plan_on(parsed: ParsedQuery, exact: bool) -> str:
    """The statement's plan where it runs: a count or a search under a filter Milvus cannot wholly
    evaluate (a LIKE pattern a server before 2.4 lacks) scans instead, without the exact copy."""
    return parsed.plan if exact or parsed.complete_filter else SCAN


def _source_step(parsed: ParsedQuery, exact: bool) -> dict:
    """What the source does, as --explain shows it."""
    step = {"collection": parsed.table, "filter": parsed.where if exact else parsed.filter}
    if parsed.similarity:
        step["similarity"] = str(parsed.similarity)
    plan = plan_on(parsed, exact)
    if plan == COUNT:
        return {"method": "exact copy: filter, count" if exact else "Milvus query count(*)", **step}
    if plan == TOP_K:
        method = "exact copy: filter, inner product, top k" if exact else "Milvus search (HNSW, IP)"
        return {"method": method, **step, "k": parsed.k}
    step["method"] = "exact copy: filter" if exact else "Milvus query iterator"
    if parsed.similarity:
        step["method"] += ", inner product" + (" per batch" if not exact else "")
        step["scores"] = {"at_least": parsed.scores.low, "at_most": parsed.scores.high}
    return {"method": step.pop("method"), **step, "columns": parsed.columns or "*"}


def explain(parsed: ParsedQuery, exact: bool) -> dict:
    """The two steps a statement becomes (what --explain prints)."""
    steps = [_source_step(parsed, exact)]
    if plan_on(parsed, exact) != COUNT:
        steps.append({"method": "DuckDB over the source's rows", "sql": parsed.relational})
    return {"plan": plan_on(parsed, exact), "steps": steps}


def _source(store: VectorStore, collection: str, parsed: ParsedQuery, vector) -> pa.Table | RowStream:
    columns = parsed.columns or None  # a statement naming no column (count(*) of a scan) reads them all
    copy = store.exact_copy(collection)
    plan = plan_on(parsed, copy is not None)
    if plan == TOP_K and copy is not None:
        return copy.top_k(vector, parsed.k, parsed.where, columns)
    if plan == TOP_K:
        hits = store.search(collection, vector, parsed.k, filter=parsed.filter, output_fields=columns or ["*"])
        schema = store.arrow_schema(collection, columns).append(pa.field(SCORE, pa.float64()))
        return pa.Table.from_pylist(hits, schema=schema)
    if copy is not None:
        return copy.scan(vector, parsed.where, columns, parsed.scores)
    return store.scan(collection, parsed.filter, columns, vector, parsed.scores)


def answer(store: VectorStore, parsed: ParsedQuery, vector: np.ndarray | None) -> pa.Table:
    """The rows of a parsed statement, given its query vector (None without similarity)."""
    collection = store.resolve(parsed.table)
    copy = store.exact_copy(collection)
    if plan_on(parsed, copy is not None) == COUNT:
        # milvus-lite counts under a filter in Python (0.3 s at 100k rows): the copy, where there is one
        count = copy.count(parsed.where) if copy is not None else store.count(collection, parsed.filter)
        return pa.table({parsed.names[0]: [count]})
    source = _source(store, collection, parsed, vector)
    try:
        rows = run_relational(parsed.relational, source.reader if isinstance(source, RowStream) else source)
    except QueryError:
        if isinstance(source, RowStream) and source.error is not None:
            raise source.error from None  # the database failed while DuckDB read it
        raise
    if parsed.capped and rows.num_rows > MAX_RESULTS:
        raise QueryError(f"the statement returns more than {MAX_RESULTS} rows: add LIMIT (at most {MAX_RESULTS}), "
                         "narrow WHERE, or aggregate")
    return rows.drop_columns([EMBEDDING]) if EMBEDDING in rows.column_names else rows


def query_table(db: str, sql: str, params: dict | None = None, store: VectorStore | None = None,
                videos: VideoResolver = local_video) -> pa.Table:
    """The rows of a statement. `store`: one to reuse; `videos`: what VIDEO(..) may open (see
    search.query_vector)."""
    store = store or VectorStore(db, create=False)
    parsed = parse_query(sql, ServedColumns(store), params)
    vector = None
    if parsed.similarity:
        vector = query_vector(store, store.resolve(parsed.table), parsed.similarity.kind, parsed.similarity.value,
                              videos=videos, video_collection=video_alias(parsed.table))
    return answer(store, parsed, vector)


def explain_query(db: str, sql: str, params: dict | None = None, store: VectorStore | None = None) -> dict:
    """The steps a statement becomes on this database (what --explain prints)."""
    store = store or VectorStore(db, create=False)
    parsed = parse_query(sql, ServedColumns(store), params)
    return explain(parsed, store.exact_copy(store.resolve(parsed.table)) is not None)


def run_query(db: str, sql: str, params: dict | None = None, explain_only: bool = False,
              store: VectorStore | None = None, videos: VideoResolver = local_video) -> list[dict] | dict:
    """Rows of a statement as dicts (or, with `explain_only`, the steps it becomes): /query's answer."""
    if explain_only:
        return explain_query(db, sql, params, store)
    return query_table(db, sql, params, store, videos).to_pylist()


def formatted(rows: pa.Table, output_format: str) -> bytes:
    """The rows as --format asks: a table to read (DuckDB's), a JSON list, CSV with a header, or Parquet."""
    if output_format == "json":
        return (json.dumps(rows.to_pylist(), default=str) + "\n").encode()
    if output_format == "table":
        return (str(duckdb.arrow(rows)) if rows.num_columns else "(no columns)\n").encode()
    sink = pa.BufferOutputStream()
    if output_format == "csv":
        pa_csv.write_csv(rows, sink)
    else:
        pq.write_table(rows, sink)
    return sink.getvalue().to_pybytes()

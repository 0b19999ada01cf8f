"""The query command: a SQL-like statement against the served collections.

Usage: python -m jobs query --db URI [--format table|json|csv|parquet] [--explain] [--param NAME=VALUE ...] "SELECT ..."

A statement runs in two steps (storage/sql/statement.py): its source, then its relational step.
On milvus-lite the source is the collection's exact copy (storage/flat_copy.py): a count, a top-k
or a scan, exact under any filter. On a server (plan_on): Milvus' count(*), its search for a
top-k (an exact pass when it returns fewer than k), a range search for a threshold, searches of
growing size for the best groups, else a query iterator streaming every row the filter keeps.
DuckDB then runs the statement over the source's rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from operator import itemgetter

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from storage.milvus.exact_copy import FlatCopy
from storage.milvus.errors import RowStream
from storage.query.relational import run_relational
from storage.schema import MAX_RESULTS, SCORE, TABLES, VIDEOS_KEY, video_alias
from storage.query import COUNT, SCAN, TOP_GROUPS, TOP_K, ParsedQuery, QueryError, parse_query
from storage.milvus.store import RANGE_LIMIT, VectorStore, scalar_schema

from .search import TextEncoding, VideoResolver, encode_alone, hits_covering_groups, local_video, query_vector

RANGE = "range"  # on a server, a scan under a similarity threshold (plan_on)


class ServedColumns(Mapping):
    """The scalar columns of each collection (alias) the database serves, asked for by name: the
    FROM name of a statement may be any collection a `vidx load --collection` made. Each alias is
    described once, so one statement sees one version throughout (a swap may land between two)."""

    def __init__(self, store: VectorStore):
        self.store, self.described = store, {}

    def _description(self, name: str) -> dict:
        if name not in self.described:
            self.described[name] = self.store.describe(name)
        if self.described[name] is None:
            raise KeyError(name)
        return self.described[name]

    def __getitem__(self, name: str) -> set[str]:
        return set(self.schema(name, None).names)

    def __iter__(self) -> Iterator[str]:
        return (name for name in TABLES if name in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def collection(self, name: str) -> str:
        """The collection (version) the alias names."""
        return self._description(name)["collection_name"]

    def schema(self, name: str, columns: list[str] | None) -> pa.Schema:
        return scalar_schema(self._description(name), columns)

    def videos_of(self, name: str) -> str:
        """The videos whose ID('...') a statement over `name` may name: a corpus records them."""
        return self._description(name).get("properties", {}).get(VIDEOS_KEY) or video_alias(name)


def plan_on(parsed: ParsedQuery, exact: bool) -> str:
    """The statement's plan where it runs. Without the exact copy (a server): a count or a search
    under a filter Milvus cannot wholly evaluate (a LIKE pattern a 2.3 server cannot match) scans
    instead; a scan under a similarity threshold is a range search when Milvus can say all of WHERE
    (streaming every vector out of a server costs ~12 s at 100k x 1024, a range search ~80 ms)."""
    if exact:
        return SCAN if parsed.plan == TOP_GROUPS else parsed.plan  # a scan of the copy is exact and fast
    if not parsed.complete_filter:
        return SCAN
    if parsed.plan == SCAN and parsed.scores.low is not None and parsed.scores_complete:
        return RANGE
    return parsed.plan


# What the source does for each plan: (on the exact copy, on Milvus); `+ scores` when it has a vector.
SOURCE_METHODS = {
    COUNT: ("exact copy: filter, count", "Milvus query: count(*)"),
    TOP_K: ("exact copy: filter, inner product, top k", "Milvus search (HNSW, inner product)"),
    SCAN: ("exact copy: filter", "Milvus query iterator, batch by batch"),
    RANGE: ("", "Milvus range search (HNSW, inner product), or the scan when 16,384 rows pass"),
    TOP_GROUPS: ("", "Milvus search (HNSW, inner product), fetching more until the groups are in, or the scan"),
}


def _source_step(parsed: ParsedQuery, plan: str, exact: bool) -> dict:
    """What the source does, as --explain shows it."""
    step = {"method": SOURCE_METHODS[plan][0 if exact else 1], "collection": parsed.table,
            "filter": parsed.where if exact else parsed.filter}
    if parsed.similarity:
        step["similarity"] = str(parsed.similarity)
    if plan in (TOP_K, TOP_GROUPS):
        step["k"] = parsed.k
    if plan in (SCAN, RANGE):
        step["columns"] = parsed.columns or "*"
        if parsed.similarity:
            step["method"] += ", inner product"
            step["scores"] = {"at_least": parsed.scores.low, "at_most": parsed.scores.high}
    return step


def explain(parsed: ParsedQuery, exact: bool) -> dict:
    """The two steps a statement becomes (what --explain prints)."""
    plan = plan_on(parsed, exact)
    steps = [_source_step(parsed, plan, exact)]
    if plan != COUNT:
        steps.append({"method": "DuckDB over the source's rows", "sql": parsed.relational})
    return {"plan": plan, "steps": steps}


def _milvus_hits(store: VectorStore, collection: str, parsed: ParsedQuery, plan: str, vector: np.ndarray,
                 fields: list[str]) -> list[dict] | None:
    """The source's rows from a Milvus search, for the plans that have one; None for a scan."""
    if plan in (TOP_K, TOP_GROUPS) and parsed.k == 0:
        return []  # LIMIT 0; Milvus refuses a limit of 0
    if plan == TOP_K:
        # Fewer than k: the filter keeps fewer rows, or the search under it fell short (a Milvus 2.3.5
        # server's filtered HNSW search returned none over vectors not of unit length): an exact pass
        # over the rows the filter keeps.
        hits = store.search(collection, vector, parsed.k, filter=parsed.filter, output_fields=fields)
        return hits if len(hits) == parsed.k else None
    if plan == RANGE:  # None when too many rows pass
        return store.range_search(collection, vector, parsed.scores, parsed.filter, output_fields=fields)
    if plan == TOP_GROUPS:
        hits, covered = hits_covering_groups(
            lambda n: store.search(collection, vector, n, filter=parsed.filter, output_fields=fields),
            itemgetter(*parsed.groups), parsed.k, RANGE_LIMIT)
        return hits if covered else None
    return None


def _source(store: VectorStore, served: ServedColumns, parsed: ParsedQuery, vector, collection: str,
            copy: FlatCopy | None, plan: str) -> pa.Table | RowStream:
    columns = parsed.columns or None  # a statement naming no column (count(*) of a scan) reads them all
    if copy is not None:
        return copy.top_k(vector, parsed.k, parsed.where, columns) if plan == TOP_K else \
            copy.scan(vector, parsed.where, columns, parsed.scores)
    hits = _milvus_hits(store, collection, parsed, plan, vector, columns or ["*"])
    if hits is not None:
        schema = served.schema(parsed.table, columns).append(pa.field(SCORE, pa.float64()))
        return pa.Table.from_pylist(hits, schema=schema)
    return store.scan(collection, parsed.filter, served.schema(parsed.table, columns), vector, parsed.scores)


def answer(store: VectorStore, served: ServedColumns, parsed: ParsedQuery, vector: np.ndarray | None) -> pa.Table:
    """The rows of a statement parsed against `served`, given its query vector (None without similarity)."""
    vector = vector if parsed.similarity else None
    collection = served.collection(parsed.table)
    copy = store.exact_copy(collection)
    plan = plan_on(parsed, copy is not None)
    if plan == COUNT:
        # milvus-lite counts under a filter in Python (0.3 s at 100k rows): the copy, where there is one
        count = copy.count(parsed.where) if copy is not None else store.count(collection, parsed.filter)
        return pa.table({parsed.names[0]: [count]})
    rows = run_relational(parsed.relational, _source(store, served, parsed, vector, collection, copy, plan))
    if parsed.capped and rows.num_rows > MAX_RESULTS:
        raise QueryError(f"the statement returns more than {MAX_RESULTS} rows: add LIMIT (at most {MAX_RESULTS}), "
                         "narrow WHERE, or aggregate")
    return rows


def query_table(db: str, sql: str, params: dict | None = None, store: VectorStore | None = None,
                videos: VideoResolver = local_video, texts: TextEncoding = encode_alone) -> pa.Table:
    """The rows of a statement. `store`: one to reuse; `videos`: what VIDEO(..) may open, `texts`
    how TEXT(..) is encoded (see search.query_vector)."""
    store = store or VectorStore(db, create=False)
    served = ServedColumns(store)
    parsed = parse_query(sql, served, params)
    vector = None
    if parsed.similarity:
        vector = query_vector(store, served.collection(parsed.table), parsed.similarity.kind,
                              parsed.similarity.value, videos=videos, video_collection=served.videos_of(parsed.table),
                              texts=texts)
    return answer(store, served, parsed, vector)


def explain_query(db: str, sql: str, params: dict | None = None, store: VectorStore | None = None) -> dict:
    """The steps a statement becomes on this database (what --explain prints)."""
    store = store or VectorStore(db, create=False)
    served = ServedColumns(store)
    parsed = parse_query(sql, served, params)
    return explain(parsed, store.exact_copy(served.collection(parsed.table)) is not None)


def run_query(db: str, sql: str, params: dict | None = None, explain_only: bool = False,
              store: VectorStore | None = None, videos: VideoResolver = local_video,
              texts: TextEncoding = encode_alone) -> list[dict] | dict:
    """Rows of a statement as dicts (or, with `explain_only`, the steps it becomes): /query's answer."""
    if explain_only:
        return explain_query(db, sql, params, store)
    return query_table(db, sql, params, store, videos, texts).to_pylist()


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

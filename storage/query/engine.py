"""The query engine: every question a database's served collections answer, whatever door it came
through (`vidx query`, `vidx search`, /query, /search, the page), becomes one Question (a statement
parsed, or a search built as one) that one executor runs: its source, then DuckDB.

The source, by plan (plan.py): on milvus-lite the collection's exact copy (a count, a top-k, the
best rows until they hold k groups, or a scan; exact under any filter); on a server Milvus' count(*),
its search for a top-k (an exact pass when it returns fewer than k), a range search for a
threshold, searches of growing size for the best groups, else a query iterator streaming every row
the filter keeps. Lookups by value (a video's stored vector for ID(..), a row for the page) go the
same way: the copy on milvus-lite, whose own query visits every row in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import replace
from operator import itemgetter
from typing import Protocol

import numpy as np
import pyarrow as pa

from errors import NotFound, UserError
from storage.milvus.errors import RowStream
from storage.milvus.exact_copy import ExactCopy
from storage.milvus.filters import equals
from storage.milvus.nights import visible_under
from storage.milvus.store import RANGE_LIMIT, VectorStore
from storage.schema import EMBEDDING, MAX_RESULTS, SCORE, VIDEO_KEY, VIDEOS, target_alias

from .arrow_filter import Untranslated, arrow_matches
from .checker import Similarity
from .plan import RANGE, explain, plan_on
from .plans import Plans
from .relational import matching_rows, run_relational
from .questions import Search, check_target, search_question
from .served import ServedColumns
from .errors import QueryError
from .statement import COUNT, TOP_GROUPS, TOP_K, Question, parse_query

# VIDEO(value) -> the query as (kind, value): ("VIDEO", a file to decode) or ("ID", a stored video).
# The CLI decodes what it is given (local_video); a server resolves it within its library.
VideoResolver = Callable[[str], tuple[str, str]]


class QueryEncoding(Protocol):
    """How TEXT(..) and VIDEO(..) become vectors, with the model a collection records (its model
    record: spec and fingerprint). The query engine knows no model: the commands bring one."""

    def text(self, model: dict, text: str) -> np.ndarray: ...

    def video(self, model: dict, path: str) -> np.ndarray: ...


def local_video(value: str) -> tuple[str, str]:
    """The CLI's VIDEO: a path or URL on this machine, decoded as it is."""
    return "VIDEO", value


def hits_covering_groups(search: Callable[[int], list[dict]], group_of: Callable[[dict], Hashable], groups: int,
                         most: int) -> tuple[list[dict], bool]:
    """The best hits, fetched in growing batches until they hold `groups` distinct groups (or
    every row there is): the best hit of each group is its first, so those groups are the best
    ones and their best hits are in. (hits, whether they do: False when `most` hits hold fewer.)
    Milvus 2.3 has no grouping search."""
    fetch = min(groups, most)
    while True:
        hits = search(fetch)
        if len({group_of(hit) for hit in hits}) >= groups or len(hits) < fetch:
            return hits, True
        if fetch == most:
            return hits, False
        fetch = min(4 * fetch, most)


class Engine:
    """One database's questions: statements and searches, their vectors, and lookups by value."""

    def __init__(self, store: VectorStore, encoding: QueryEncoding | None = None):
        """`encoding`: how TEXT(..) and VIDEO(..) are encoded; None where no question has them."""
        self.store, self.encoding = store, encoding
        self.plans = Plans()

    def statement(self, served: ServedColumns, sql: str, params: dict | None = None) -> Question:
        """The Question a statement asks of what `served` serves (planned once per collection version)."""
        key = ("statement", sql, tuple(sorted((params or {}).items())))
        return self.plans.question(key, served, lambda: parse_query(sql, served, params))

    def search_question(self, served: ServedColumns, search: Search, alias: str) -> Question:
        """The Question `search` asks of the collection served as `alias`, planned once per collection
        version whatever value it searches for."""
        kind, value = search.query()
        key = ("search", alias, kind, search.model_dump_json(exclude={"text", "video", "video_id"}))
        question = self.plans.question(key, served, lambda: search_question(search, alias, served))
        return replace(question, similarity=Similarity(kind, value))

    # The doors.

    def query(self, sql: str, params: dict | None = None, videos: VideoResolver = local_video) -> pa.Table:
        """The rows of a statement; `videos`: what VIDEO(..) may open."""
        served = ServedColumns(self.store)
        question = self.statement(served, sql, params)
        return self.answer(served, question, self.vector(served, question, videos))

    def explain(self, sql: str, params: dict | None = None) -> dict:
        """The steps a statement becomes on this database (what --explain prints)."""
        served = ServedColumns(self.store)
        question = self.statement(served, sql, params)
        return explain(question, served.exact_copy(question.table) is not None)

    def search(self, search: Search, collection: str = VIDEOS, videos: VideoResolver = local_video) -> list[dict]:
        """The rows of a search of `search.target` beside the videos served as `collection`, best first."""
        served = ServedColumns(self.store)
        search.query()  # exactly one of text, video, video_id, before anything else is said
        alias = target_alias(collection, check_target(search.target))
        if alias not in served:  # named before the filter is read
            self.store.described(alias)
        try:
            question = self.search_question(served, search, alias)
        except QueryError as e:
            raise QueryError(f"search failed (--where {search.where!r}): {e}") from None
        vector = self.vector(served, question, videos, videos_alias=collection)
        return self.answer(served, question, vector).to_pylist()

    # The executor.

    def answer(self, served: ServedColumns, question: Question, vector: np.ndarray | None) -> pa.Table:
        """The rows of a question asked of `served`, given its query vector (None without similarity)."""
        vector = vector if question.similarity else None
        collection, night = served.collection(question.table), served.night(question.table)
        copy = served.exact_copy(question.table)
        plan = plan_on(question, copy is not None)
        if copy is not None:
            kept = self._kept(copy, question)
            if plan == COUNT:
                return pa.table({question.names[0]: [copy.count(kept)]})
            rows = self._copy_rows(copy, question, plan, vector, kept)
        else:
            # Milvus holds the rows of other nights too: the filter keeps those of the night served.
            question = replace(question, filter=visible_under(question.filter, night))
            if plan == COUNT:
                return pa.table({question.names[0]: [self.store.count(collection, question.filter)]})
            rows = self._milvus_rows(served, question, plan, vector, collection)
        answer = run_relational(question.relational, rows)
        if question.capped and answer.num_rows > MAX_RESULTS:
            raise QueryError(f"the statement returns more than {MAX_RESULTS} rows: add LIMIT (at most {MAX_RESULTS}), "
                             "narrow WHERE, or aggregate")
        return answer

    @staticmethod
    def _kept(copy: ExactCopy, question: Question) -> np.ndarray | None:
        """The positions of the copy's rows WHERE's column conditions keep (None: every row): Arrow's
        kernels, or DuckDB where their meaning could differ (arrow_filter.py)."""
        if question.conditions is None:
            return None
        try:
            return arrow_matches(copy.rows, question.conditions)
        except Untranslated:
            return matching_rows(copy.rows, question.where)

    @staticmethod
    def _copy_rows(copy: ExactCopy, question: Question, plan: str, vector: np.ndarray | None,
                   kept: np.ndarray | None) -> pa.Table:
        columns = question.columns or None  # a statement naming no column (count(*) of a scan) reads them all
        if plan == TOP_K:
            return copy.top_k(vector, question.k, kept, columns)
        if plan == TOP_GROUPS and len(question.groups) == 1:
            return copy.top_groups(vector, question.k, question.groups[0], kept, columns)
        return copy.scan(vector, kept, columns, question.scores)

    def _milvus_rows(self, served: ServedColumns, question: Question, plan: str, vector: np.ndarray | None,
                     collection: str) -> pa.Table | RowStream:
        columns = question.columns or None  # a statement naming no column (count(*) of a scan) reads them all
        as_of = served.as_of(question.table)
        hits = self._milvus_hits(question, plan, vector, collection, columns or ["*"], as_of)
        if hits is not None:
            schema = served.schema(question.table, columns).append(pa.field(SCORE, pa.float64()))
            return pa.Table.from_pylist(hits, schema=schema)
        return self.store.scan(collection, question.filter, served.schema(question.table, columns), vector,
                               question.scores, as_of)

    def _milvus_hits(self, question: Question, plan: str, vector: np.ndarray, collection: str,
                     fields: list[str], as_of: int | None) -> list[dict] | None:
        """The source's rows from a Milvus search, for the plans that have one; None for a scan."""
        store = self.store
        if plan in (TOP_K, TOP_GROUPS) and question.k == 0:
            return []  # LIMIT 0; Milvus refuses a limit of 0
        if plan == TOP_K:
            # Fewer than k: the filter keeps fewer rows, or the search under it fell short (a Milvus 2.3.5
            # server's filtered HNSW search returned none over vectors not of unit length): an exact pass
            # over the rows the filter keeps.
            hits = store.search(collection, vector, question.k, question.filter, fields, as_of=as_of)
            return hits if len(hits) == question.k else None
        if plan == RANGE:  # None when too many rows pass
            return store.range_search(collection, vector, question.scores, question.filter, fields, as_of)
        if plan == TOP_GROUPS:
            hits, covered = hits_covering_groups(
                lambda n: store.search(collection, vector, n, question.filter, fields, as_of=as_of),
                itemgetter(*question.groups), question.k, RANGE_LIMIT)
            return hits if covered else None
        return None

    # Query vectors, and rows by value.

    def vector(self, served: ServedColumns, question: Question, videos: VideoResolver,
               videos_alias: str | None = None) -> np.ndarray | None:
        """The query vector of the question's similarity (None without one): a TEXT or VIDEO encoded by
        the model of the collection asked, or the stored vector of the video an ID (or a server's
        VIDEO) names, among the videos of `videos_alias` (default: those the collection records)."""
        if question.similarity is None:
            return None
        kind, value = question.similarity.kind, question.similarity.value
        if kind == "VIDEO":
            kind, value = videos(value)
        if kind == "ID":
            return self.stored_vector(served, videos_alias or served.videos_of(question.table), value)
        if kind == "TEXT" and not value.strip():
            raise UserError("the text to search for is empty")
        if self.encoding is None:
            raise TypeError(f"this Engine encodes no {kind}(..): give it a QueryEncoding")
        model = served.model(question.table)
        return self.encoding.text(model, value) if kind == "TEXT" else self.encoding.video(model, value)

    def stored_vector(self, served: ServedColumns, videos: str, video_id: str) -> np.ndarray:
        """The stored vector of a video of the collection served as `videos` (its first segment)."""
        rows = self._rows_with(served, videos, {"video_id": video_id}, [VIDEO_KEY, EMBEDDING], limit=None)
        if not rows:
            raise NotFound(f"video {video_id!r}: no such video in the collection")
        first = min(rows, key=lambda r: r[VIDEO_KEY])  # segment 0 of a segmented video
        return np.asarray(first[EMBEDDING], np.float32)

    def rows_with(self, alias: str, values: dict[str, str], fields: list[str], limit: int | None = 1) -> list[dict]:
        """Rows of the collection served as `alias` where any of the columns holds its value (`limit`
        of them; None: all): from the exact copy where there is one, else Milvus' query."""
        return self._rows_with(ServedColumns(self.store), alias, values, fields, limit)

    def _rows_with(self, served: ServedColumns, alias: str, values: dict[str, str], fields: list[str],
                   limit: int | None) -> list[dict]:
        copy = served.exact_copy(alias)
        if copy is None:
            collection, night = served.collection(alias), served.night(alias)
            condition = " or ".join(equals(column, value) for column, value in values.items())
            return self.store.query(collection, filter=visible_under(condition, night), output_fields=fields,
                                    as_of=served.as_of(alias),
                                    **({"limit": limit} if limit else {}))
        positions = np.unique(np.concatenate([copy.positions(column, [value]) for column, value in values.items()]))
        positions = positions[:limit] if limit else positions
        rows = copy.table(positions, [f for f in fields if f != EMBEDDING]).to_pylist()
        if EMBEDDING in fields:
            for row, position in zip(rows, positions):
                row[EMBEDDING] = copy.matrix[position]
        return rows

    def count(self, alias: str) -> int:
        """The rows the collection served as `alias` serves."""
        served = ServedColumns(self.store)
        copy = served.exact_copy(alias)
        if copy is not None:
            return copy.count()
        return self.store.count(served.collection(alias), visible_under("", served.night(alias)))

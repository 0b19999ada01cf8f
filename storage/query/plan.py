"""Where a Question runs, and the steps --explain shows: its source (the exact copy on milvus-lite,
Milvus on a server), then DuckDB over the source's rows."""

from __future__ import annotations

from storage.milvus.store import RANGE_LIMIT

from .statement import COUNT, SCAN, TOP_GROUPS, TOP_K, Question

RANGE = "range"  # on a server, a scan under a similarity threshold

# What the source does for each plan: (on the exact copy, on Milvus).
SOURCE_METHODS = {
    COUNT: ("exact copy: filter, count", "Milvus query: count(*)"),
    TOP_K: ("exact copy: filter, inner product, top k", "Milvus search (HNSW, inner product)"),
    SCAN: ("exact copy: filter", "Milvus query iterator, batch by batch"),
    RANGE: ("", f"Milvus range search (HNSW, inner product), or the scan when {RANGE_LIMIT:,} rows pass"),
    TOP_GROUPS: ("exact copy: filter, inner product, the best rows until they hold k groups",
                 "Milvus search (HNSW, inner product), fetching more until the groups are in, or the scan"),
}


def plan_on(question: Question, exact: bool) -> str:
    """The question's plan where it runs. On the exact copy, as the question says. On a server, a
    count or a search under a filter Milvus cannot wholly evaluate (a LIKE pattern a 2.3 server
    cannot match) scans instead, and a scan under a similarity threshold is a range search when
    Milvus can say all of WHERE (streaming every vector out of a server costs far more:
    docs/benchmarks.md, "SQL queries under filters")."""
    if exact:
        return question.plan
    if not question.complete_filter:
        return SCAN
    if question.plan == SCAN and question.scores.low is not None and question.scores_complete:
        return RANGE
    return question.plan


def _source_step(question: Question, plan: str, exact: bool) -> dict:
    """What the source does, as --explain shows it."""
    step = {"method": SOURCE_METHODS[plan][0 if exact else 1], "collection": question.table,
            "filter": question.where if exact else question.filter}
    if question.similarity:
        step["similarity"] = str(question.similarity)
    if plan in (TOP_K, TOP_GROUPS):
        step["k"] = question.k
    if plan in (SCAN, RANGE):
        step["columns"] = question.columns or "*"
        if question.similarity:
            step["method"] += ", inner product"
            step["scores"] = {"at_least": question.scores.low, "at_most": question.scores.high}
    return step


def explain(question: Question, exact: bool) -> dict:
    """The two steps a question becomes (what --explain prints)."""
    plan = plan_on(question, exact)
    steps = [_source_step(question, plan, exact)]
    if plan != COUNT:
        steps.append({"method": "DuckDB over the source's rows", "sql": question.relational})
    return {"plan": plan, "steps": steps}

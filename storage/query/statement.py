"""The SQL-like dialect: a one-table SELECT, checked, then split between its source and DuckDB.

    SELECT video_id, max(similarity(TEXT('a goal'))) AS best, arg_max(start_s, score) AS at
    FROM videos WHERE duration_s > 10 GROUP BY video_id ORDER BY best DESC LIMIT 10

Every part of the statement is checked here, so a mistake is refused with the offending part and
its place (a QueryError) before anything runs. What runs is a Question, in two steps:
- the source: the rows WHERE's column conditions keep (a Milvus filter, or the same conditions
  over the exact copy's columns), each with its `score` when the statement asks for similarity,
  narrowed by WHERE's similarity thresholds; a vector search when the statement is a top-k by
  similarity; a count when that is all the statement asks;
- the relational step: the statement itself, similarity(...) read as the source's `score`, run
  by DuckDB over the source's rows (storage/query/relational.py), which re-applies all of WHERE.

A search (storage/query/search.py) is a statement built here from its parts, so it becomes the same
Question and runs the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from sqlglot import exp

from storage.milvus.scores import ScoreRange
from storage.schema import MAX_RESULTS, SCORE, TABLES

from .checker import Checker, Similarity, grouped_column, is_score, is_similarity
from .errors import DIALECT, parse, refuse
from .milvus_filter import MilvusFilter

# sqlglot's names for SELECT clauses outside the dialect -> what the error calls them.
UNSUPPORTED_CLAUSES = {"joins": "JOIN", "with_": "WITH", "with": "WITH", "windows": "WINDOW", "qualify": "QUALIFY",
                       "laterals": "LATERAL"}
SOURCE = "source"  # the relational step's name for the source's rows

# What a statement becomes (ParsedQuery.plan).
COUNT = "count"  # count(*) under the filter (the exact copy, or Milvus): the whole answer
TOP_K = "top_k"  # the LIMIT + OFFSET best rows by similarity under the filter, then the relational step
SCAN = "scan"  # every row the filter and thresholds keep, then the relational step
# The best LIMIT + OFFSET groups by their best similarity (the best segment per video): the best
# rows, fetched until they hold that many groups, then the relational step. For a server, where a
# scan streams every vector out of Milvus; the exact copy scans.
TOP_GROUPS = "top_groups"


@dataclass(frozen=True)
class Question:
    """What a statement or a search asks, as its source and its relational step run it."""

    table: str
    plan: str  # COUNT, TOP_K, TOP_GROUPS or SCAN
    similarity: Similarity | None
    filter: str  # WHERE's column conditions Milvus can evaluate, as a Milvus expression; "" for none
    complete_filter: bool  # whether `filter` holds all of them (else a search under it would keep too many)
    where: str  # all of WHERE's column conditions as DuckDB SQL; "" for none
    conditions: exp.Expression | None  # the same conditions, parsed (the exact copy's filter reads them)
    scores: ScoreRange
    scores_complete: bool  # whether `scores` says all of WHERE's conditions on similarity
    columns: list[str] | None  # the stored columns the statement reads; None: all of them
    k: int  # LIMIT + OFFSET: the rows (TOP_K) or groups (TOP_GROUPS) a search must hold
    relational: str  # the statement over SOURCE, as DuckDB runs it
    capped: bool  # no LIMIT: the relational step fetches one row past MAX_RESULTS, to say so
    names: list[str]  # the output columns' names (COUNT: its one column)
    groups: list[str]  # the GROUP BY columns (TOP_GROUPS: what a group is)


def _milvus_can(condition: exp.Expression) -> bool:
    """Whether every Milvus vidx serves from evaluates `condition` as SQL does: 2.3 servers match LIKE
    patterns only as a prefix (`ab%`) or whole (and take `_` literally)."""
    def prefix_only(like: exp.Like) -> bool:
        pattern = like.expression.this if isinstance(like.expression, exp.Literal) else ""
        return "_" not in pattern and "%" not in pattern.removesuffix("%")
    return all(prefix_only(like) for like in condition.find_all(exp.Like))


def _conjuncts(node: exp.Expression) -> Iterator[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node


def _count(sql: str, node: exp.Expression | None, name: str) -> int | None:
    if node is None:
        return None
    value = node.expression
    if not isinstance(value, exp.Literal) or value.is_string or not value.this.isdigit():
        raise refuse(sql, value, f"{name} takes a whole number")
    if int(value.this) > MAX_RESULTS:
        raise refuse(sql, value, f"{name} is at most {MAX_RESULTS}")
    return int(value.this)


def _with_params(sql: str, tree: exp.Expression, params: dict) -> exp.Expression:
    """Each :name replaced by its value as a literal (so no value changes the statement's structure)."""
    for placeholder in tree.find_all(exp.Placeholder):
        if placeholder.name not in params:
            raise refuse(sql, placeholder, f"no value given for parameter :{placeholder.name}")
    return tree.transform(lambda n: exp.convert(params[n.name]) if isinstance(n, exp.Placeholder) else n, copy=False)


def _table(sql: str, tree: exp.Expression, columns: Mapping[str, set[str]]) -> str:
    if isinstance(tree, exp.Block):
        raise refuse(sql, tree.expressions[1], "one statement at a time")
    if not isinstance(tree, exp.Select):
        raise refuse(sql, tree, "only SELECT is supported")
    for arg, clause in UNSUPPORTED_CLAUSES.items():
        if tree.args.get(arg):
            node = tree.args[arg]
            raise refuse(sql, node[0] if isinstance(node, list) else node, f"{clause} is not supported")
    nested = [s for s in tree.find_all(exp.Select, exp.Subquery) if s is not tree]
    if nested:
        raise refuse(sql, nested[0], "subqueries are not supported")
    source = tree.args.get("from_") or tree.args.get("from")
    table = source.this if source is not None and isinstance(source.this, exp.Table) else None
    if table is None or table.name not in columns:
        if table is not None and table.name in TABLES:
            raise refuse(sql, table, "no such collection in the database (load one with `vidx load`)")
        raise refuse(sql, table or source or tree, f"FROM takes one of {', '.join(TABLES)} or a collection "
                                                   "loaded with `vidx load --collection NAME`")
    return table.name


def _threshold(node: exp.Expression) -> ScoreRange | None:
    """A WHERE condition that only bounds similarity, as bounds (None for any other condition)."""
    def number(literal: exp.Expression) -> float:
        return -float(literal.this.this) if isinstance(literal, exp.Neg) else float(literal.this)

    if isinstance(node, exp.Between) and is_score(node.this):
        return ScoreRange(number(node.args["low"]), number(node.args["high"]))
    if isinstance(node, (exp.GT, exp.GTE)) and is_score(node.this):
        return ScoreRange(low=number(node.expression))
    if isinstance(node, (exp.LT, exp.LTE)) and is_score(node.this):
        return ScoreRange(high=number(node.expression))
    if isinstance(node, exp.EQ) and is_score(node.this):
        return ScoreRange(number(node.expression), number(node.expression))
    return None


def _narrowest(ranges: list[ScoreRange]) -> ScoreRange:
    lows = [r.low for r in ranges if r.low is not None]
    highs = [r.high for r in ranges if r.high is not None]
    return ScoreRange(max(lows) if lows else None, min(highs) if highs else None)


def _resolved(tree: exp.Select, aliases: dict, key: exp.Expression) -> exp.Expression:
    """An ORDER BY key as the expression it names: a SELECT alias or position, or itself."""
    if isinstance(key, exp.Column) and not key.table and key.name in aliases:
        return aliases[key.name]
    if isinstance(key, exp.Literal) and not key.is_string:
        return tree.expressions[int(key.this) - 1].unalias()
    return key


def _orders_by_similarity(tree: exp.Select, aliases: dict) -> bool:
    """Whether the first ORDER BY key is similarity, descending."""
    order = tree.args.get("order")
    if not order:
        return False
    first = order.expressions[0]
    return bool(first.args.get("desc")) and is_score(_resolved(tree, aliases, first.this))


def _output_name(item: exp.Expression) -> str:
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column):
        return item.name
    if is_similarity(item):
        return SCORE
    return item.sql(dialect=DIALECT, normalize_functions="lower")


def _relational(sql: str, tree: exp.Select, limit: int | None) -> tuple[str, list[str]]:
    """The statement as DuckDB runs it over SOURCE, and its output columns' names. Every unnamed
    expression is named by its text; a row is a mapping (JSON): no name twice."""
    names = [_output_name(item) for item in tree.expressions]
    for i, name in enumerate(names):
        if name in names[:i] and name != "*":
            raise refuse(sql, tree.expressions[i], f"a second output column named {name!r} (name it with AS)")
    named = tree.copy()
    named.set("expressions", [item if isinstance(item, (exp.Alias, exp.Column, exp.Star)) else
                              exp.alias_(item, name, quoted=True) for item, name in zip(named.expressions, names)])
    if limit is None:
        named.limit(MAX_RESULTS + 1, copy=False)
    return relational_sql(named), names


def relational_sql(tree: exp.Select) -> str:
    """A SELECT over the served collection as DuckDB runs it over SOURCE: similarity(...) is the
    source's score. `tree` becomes it (pass a copy)."""
    named = tree.transform(lambda n: exp.column(SCORE) if is_similarity(n) else n, copy=False)
    named.find(exp.Table).replace(exp.Table(this=exp.to_identifier(SOURCE)))
    return named.sql(dialect=DIALECT)


def _best_per_group(tree: exp.Select, aliases: dict) -> bool:
    """Whether the statement asks only for groups and their best similarity (max(similarity), the
    arg_max of a column by it), best group first."""
    grouped = {grouped_column(tree, node).name for node in tree.args["group"].expressions}

    def best(node: exp.Expression) -> bool:
        return isinstance(node, exp.Max) and is_score(node.this)

    def allowed(node: exp.Expression) -> bool:
        return ((isinstance(node, exp.Column) and node.name in grouped) or best(node)
                or (isinstance(node, exp.ArgMax) and is_score(node.expression)))
    order = tree.args["order"].expressions
    keys = [_resolved(tree, aliases, ordered.this) for ordered in order]
    return (bool(order[0].args.get("desc")) and best(keys[0]) and all(map(allowed, keys))
            and all(allowed(item.unalias()) for item in tree.expressions))


def _plan(tree: exp.Select, checker: Checker, aggregated: bool, limited: bool,
          thresholds: list[ScoreRange | None]) -> str:
    """COUNT for count(*) alone; TOP_K for the best rows by similarity and TOP_GROUPS for the best
    groups, when every threshold is a lower bound (a lower bound keeps a prefix of the ranking: the
    top k, then the threshold, is exact); else SCAN."""
    items = tree.expressions
    only_count = len(items) == 1 and isinstance(items[0].unalias(), exp.Count) and \
        isinstance(items[0].unalias().this, exp.Star)
    clauses = any(tree.args.get(arg) for arg in ("group", "having", "order", "limit", "offset", "distinct"))
    if only_count and not clauses and checker.similarity is None:
        return COUNT
    if (checker.similarity and not aggregated and not tree.args.get("distinct") and limited
            and _orders_by_similarity(tree, checker.aliases) and all(t and t.high is None for t in thresholds)):
        return TOP_K
    if (checker.similarity and tree.args.get("group") and tree.args.get("order") and limited
            and not tree.args.get("having") and not tree.args.get("distinct")
            and all(t and t.high is None for t in thresholds) and _best_per_group(tree, checker.aliases)):
        return TOP_GROUPS
    return SCAN


def parse_query(sql: str, columns: Mapping[str, set[str]], params: dict | None = None) -> Question:
    """Parse and check a statement against `columns`: the served collections (aliases) the
    database holds, each with its scalar columns. Raises QueryError."""
    tree = parse(sql)
    table = _table(sql, tree, columns)  # FROM first: its columns say what the rest may name
    return question_of(sql, _with_params(sql, tree, params or {}), table, columns)


def question_of(sql: str, tree: exp.Select, table: str, columns: Mapping[str, set[str]]) -> Question:
    """The Question a SELECT (its parameters given values) over served collection `table` asks,
    checked; `sql` is the text its parts are found in when one is refused."""
    checker = Checker(sql, tree, columns[table])
    aggregated = checker.check()
    limit = _count(sql, tree.args.get("limit"), "LIMIT")
    offset = _count(sql, tree.args.get("offset"), "OFFSET") or 0

    where = tree.args.get("where")
    conditions = list(_conjuncts(where.this)) if where else []
    plain = [c for c in conditions if not any(is_score(n) for n in c.walk())]
    thresholds = [_threshold(c) for c in conditions if any(is_score(n) for n in c.walk())]
    pushed = [c for c in plain if _milvus_can(c)]
    kept = exp.and_(*plain, copy=True) if plain else None  # an OR among them is parenthesised
    milvus = exp.and_(*pushed, copy=True) if pushed else None
    plan = _plan(tree, checker, aggregated, limit is not None, thresholds)
    relational, names = _relational(sql, tree, limit)
    star = any(isinstance(item, exp.Star) for item in tree.expressions)
    group = tree.args.get("group")
    return Question(
        table=table, plan=plan, similarity=checker.similarity,
        filter=MilvusFilter(sql, columns[table])(milvus) if milvus else "",
        complete_filter=len(pushed) == len(plain),
        where=kept.sql(dialect=DIALECT) if kept else "", conditions=kept,
        scores=_narrowest([t for t in thresholds if t is not None]),
        scores_complete=None not in thresholds,
        columns=None if star else sorted(checker.read),
        k=(limit or 0) + offset,
        relational=relational, capped=limit is None, names=names,
        groups=[grouped_column(tree, node).name for node in group.expressions] if group else [],
    )

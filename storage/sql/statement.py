"""The SQL-like dialect: a one-table SELECT, checked, then split between Milvus and DuckDB.

    SELECT video_id, max(similarity(TEXT('a goal'))) AS best, arg_max(start_s, score) AS at
    FROM videos WHERE duration_s > 10 GROUP BY video_id ORDER BY best DESC LIMIT 10

Every part of the statement is checked here, so a mistake is refused with the offending part and
its place (a QueryError) before anything runs. What runs is a ParsedQuery, in two steps:
- the source: the rows WHERE's column conditions keep (a Milvus filter, or the same conditions
  as DuckDB SQL over the exact copy), each with its `score` when the statement asks for
  similarity, narrowed by WHERE's similarity thresholds; a vector search when the statement is a
  top-k by similarity; Milvus' own count(*) when that is all the statement asks;
- the relational step: the statement itself, similarity(...) read as the source's `score`, run
  by DuckDB over the source's rows (storage/relational.py), which re-applies all of WHERE.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from sqlglot import exp

from ..schema import MAX_RESULTS, SCORE, TABLES
from .errors import DIALECT, parse, refuse
from .milvus_filter import MilvusFilter

QUERY_KINDS = ("TEXT", "VIDEO", "ID")
AGGREGATES = (exp.Count, exp.Min, exp.Max, exp.Avg, exp.Sum, exp.ArgMax, exp.ArgMin)
FUNCTIONS = "similarity, count, min, max, avg, sum, arg_max, arg_min"
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
LOWER_BOUNDS = (exp.GT, exp.GTE)
# sqlglot's names for SELECT clauses outside the dialect -> what the error calls them.
UNSUPPORTED_CLAUSES = {"joins": "JOIN", "with_": "WITH", "with": "WITH", "windows": "WINDOW", "qualify": "QUALIFY",
                       "laterals": "LATERAL"}
SOURCE = "source"  # the relational step's name for the source's rows

# What a statement becomes (ParsedQuery.plan).
COUNT = "count"  # Milvus' count(*) under the filter: the whole answer
TOP_K = "top_k"  # the LIMIT + OFFSET best rows by similarity under the filter, then the relational step
SCAN = "scan"  # every row the filter and thresholds keep, then the relational step


@dataclass(frozen=True)
class Similarity:
    kind: str  # TEXT | VIDEO | ID
    value: str

    def __str__(self) -> str:
        return f"{self.kind}({self.value!r})"


@dataclass(frozen=True)
class ScoreRange:
    """WHERE's similarity thresholds, inclusive: the source may keep more, never less."""
    low: float | None = None
    high: float | None = None

    def within(self, scores: np.ndarray) -> np.ndarray:
        scores, kept = np.asarray(scores, np.float64), np.ones(len(scores), bool)  # float64, as DuckDB compares
        if self.low is not None:
            kept &= scores >= self.low
        if self.high is not None:
            kept &= scores <= self.high
        return kept


@dataclass(frozen=True)
class ParsedQuery:
    table: str
    plan: str  # COUNT, TOP_K or SCAN
    similarity: Similarity | None
    filter: str  # WHERE's column conditions Milvus can evaluate, as a Milvus expression; "" for none
    complete_filter: bool  # whether `filter` holds all of them (else a search under it would keep too many)
    where: str  # all of WHERE's column conditions as DuckDB SQL (over the exact copy); "" for none
    scores: ScoreRange
    columns: list[str] | None  # the stored columns the statement reads; None: all of them
    k: int  # TOP_K: how many rows the search returns
    relational: str  # the statement over SOURCE, as DuckDB runs it
    capped: bool  # no LIMIT: the relational step fetches one row past MAX_RESULTS, to say so
    names: list[str]  # the output columns' names (COUNT: its one column)


def _is_similarity(node: exp.Expression) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.lower() == "similarity"


def _is_score(node: exp.Expression) -> bool:
    return _is_similarity(node) or (isinstance(node, exp.Column) and not node.table and node.name == SCORE)


def _milvus_can(condition: exp.Expression) -> bool:
    """Whether every Milvus evaluates `condition` as SQL does: servers before 2.4 match LIKE
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


def _unaggregated(node: exp.Expression) -> Iterator[exp.Expression]:
    """The columns and similarity calls of `node` outside any aggregate."""
    if isinstance(node, AGGREGATES):
        return
    if isinstance(node, exp.Column) or _is_similarity(node):
        yield node
        return
    for child in node.iter_expressions():
        yield from _unaggregated(child)


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
    return tree.transform(lambda n: exp.convert(params[n.name]) if isinstance(n, exp.Placeholder) else n)


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


class _Checker:
    """Walks a statement's clauses, refusing what the dialect lacks and noting what it reads."""

    def __init__(self, sql: str, tree: exp.Select, columns: set[str]):
        self.sql, self.tree, self.columns = sql, tree, columns
        self.read: set[str] = set()  # stored columns the statement reads
        self.similarity: Similarity | None = None
        self.scores: list[exp.Expression] = []  # every similarity(...) and `score`
        self.aliases = {item.alias: item.this for item in tree.expressions if isinstance(item, exp.Alias)}

    def similarity_call(self, node: exp.Anonymous) -> None:
        inner = node.expressions[0] if len(node.expressions) == 1 else None
        if (not isinstance(inner, exp.Anonymous) or inner.name.upper() not in QUERY_KINDS
                or len(inner.expressions) != 1 or not isinstance(inner.expressions[0], exp.Literal)
                or not inner.expressions[0].is_string):
            raise refuse(self.sql, inner or node, "similarity() takes TEXT('...'), VIDEO('path') or ID('video_id')")
        called = Similarity(inner.name.upper(), inner.expressions[0].this)
        if self.similarity is not None and called != self.similarity:
            raise refuse(self.sql, node, f"one similarity per statement (this one differs from {self.similarity})")
        self.similarity = called

    def value(self, node: exp.Expression, clause: str, in_aggregate: bool = False) -> None:
        """A column, `score`, similarity(...), an aggregate of one, or (ORDER BY, HAVING) a SELECT alias."""
        if isinstance(node, exp.Paren):
            return self.value(node.this, clause, in_aggregate)
        if _is_similarity(node):
            self.similarity_call(node)
            self.scores.append(node)
        elif isinstance(node, exp.Column):
            self.column(node, clause, in_aggregate)
        elif isinstance(node, AGGREGATES):
            self.aggregate(node, clause, in_aggregate)
        elif isinstance(node, exp.Star) and clause == "SELECT" and not in_aggregate:
            return
        elif isinstance(node, (exp.Func, exp.Anonymous)):
            name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            raise refuse(self.sql, node, f"unknown function {name.lower()}() (known: {FUNCTIONS})")
        else:
            raise refuse(self.sql, node, f"not supported in {clause} (expected a column, score, similarity(...) "
                                         "or an aggregate)")

    def column(self, node: exp.Column, clause: str, in_aggregate: bool) -> None:
        if node.table:
            raise refuse(self.sql, node, "expected a column name")
        if node.name in self.aliases and clause in ("ORDER BY", "HAVING") and not in_aggregate:
            return
        if node.name == SCORE:
            self.scores.append(node)
        elif node.name in self.columns:
            self.read.add(node.name)
        else:
            raise refuse(self.sql, node, f"unknown column (known: {', '.join(sorted(self.columns | {SCORE}))})")

    def aggregate(self, node: exp.Expression, clause: str, in_aggregate: bool) -> None:
        if clause in ("WHERE", "GROUP BY"):
            raise refuse(self.sql, node, f"aggregates are not allowed in {clause} (filter groups with HAVING)")
        if in_aggregate:
            raise refuse(self.sql, node, "an aggregate inside an aggregate")
        if isinstance(node.this, exp.Distinct):
            raise refuse(self.sql, node, "DISTINCT inside an aggregate is not supported")
        if isinstance(node.this, exp.Star) and not isinstance(node, exp.Count):
            raise refuse(self.sql, node, "only count takes *")
        for argument in (node.this, node.args.get("expression")):
            if argument is not None and not isinstance(argument, exp.Star):
                self.value(argument, clause, in_aggregate=True)

    def literal(self, node: exp.Expression, number: bool = False) -> None:
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
            return
        if isinstance(node, exp.Literal) and not (number and node.is_string):
            return
        if isinstance(node, exp.Boolean) and not number:
            return
        raise refuse(self.sql, node, "expected a number" if number else "expected a literal or :parameter")

    def predicate(self, node: exp.Expression, clause: str) -> None:
        """WHERE or HAVING: comparisons, IN, BETWEEN, LIKE and IS NULL joined by AND, OR and NOT."""
        if isinstance(node, (exp.Paren, exp.Not)):
            return self.predicate(node.this, clause)
        if isinstance(node, (exp.And, exp.Or)):
            self.predicate(node.this, clause)
            return self.predicate(node.expression, clause)
        operand = node.this if isinstance(node, COMPARISONS + (exp.In, exp.Between, exp.Like, exp.Is)) else None
        if operand is None or (isinstance(node, exp.In) and node.args.get("query")):
            raise refuse(self.sql, node, f"not supported in {clause}")
        if clause == "WHERE" and not (isinstance(operand, exp.Column) or _is_similarity(operand)):
            raise refuse(self.sql, operand, "expected a column name")
        self.value(operand, clause)
        scored = _is_score(operand)
        if scored and not isinstance(node, COMPARISONS + (exp.Between,)):
            raise refuse(self.sql, node, "similarity is compared with numbers (>, <, =, BETWEEN)")
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise refuse(self.sql, node, f"not supported in {clause}")
        elif isinstance(node, exp.Between):
            self.literal(node.args["low"], scored)
            self.literal(node.args["high"], scored)
        elif isinstance(node, exp.In):
            for value in node.expressions:
                self.literal(value)
        else:
            self.literal(node.expression, scored)

    def grouping(self) -> tuple[bool, set[str]]:
        """(whether the statement aggregates, its GROUP BY columns), refusing ungrouped columns."""
        group = self.tree.args.get("group")
        grouped = set()
        for node in group.expressions if group else []:
            if not isinstance(node, exp.Column) or node.table or node.name not in self.columns:
                raise refuse(self.sql, node, "GROUP BY takes column names")
            self.read.add(node.name)
            grouped.add(node.name)
        having, order = self.tree.args.get("having"), self.tree.args.get("order")
        # (node, whether a SELECT alias may stand for an expression there)
        clauses = [*((item, False) for item in self.tree.expressions), *([(having.this, True)] if having else []),
                   *((ordered, True) for ordered in (order.expressions if order else []))]
        aggregated = bool(group) or any(node.find(*AGGREGATES) for node, _ in clauses)
        if having and not aggregated:
            raise refuse(self.sql, having, "HAVING needs GROUP BY or an aggregate")
        if not aggregated:
            return False, grouped
        for clause, aliases in clauses:
            if isinstance(clause, exp.Star):
                raise refuse(self.sql, clause, "SELECT * cannot be grouped: name the columns")
            for node in _unaggregated(clause):
                named = isinstance(node, exp.Column) and (node.name in grouped or (aliases and node.name in self.aliases))
                if not named:
                    raise refuse(self.sql, node, "must be in GROUP BY or inside an aggregate")
        return True, grouped

    def check(self) -> bool:
        """Check every clause; whether the statement aggregates."""
        for item in self.tree.expressions:
            self.value(item.this if isinstance(item, exp.Alias) else item, "SELECT")
        where = self.tree.args.get("where")
        if where:
            self.predicate(where.this, "WHERE")
        aggregated = self.grouping()[0]
        having = self.tree.args.get("having")
        if having:
            self.predicate(having.this, "HAVING")
        order = self.tree.args.get("order")
        for ordered in order.expressions if order else []:
            key = ordered.this
            if isinstance(key, exp.Literal) and not key.is_string:
                if not key.this.isdigit() or not 1 <= int(key.this) <= len(self.tree.expressions):
                    raise refuse(self.sql, key, "ORDER BY position out of range")
            else:
                self.value(key, "ORDER BY")
        if self.scores and self.similarity is None:
            raise refuse(self.sql, self.scores[0], "score needs a similarity(TEXT(..) | VIDEO(..) | ID(..)) "
                                                   "in the statement")
        return aggregated


def _threshold(node: exp.Expression) -> ScoreRange | None:
    """A WHERE condition that only bounds similarity, as bounds (None for any other condition)."""
    def number(literal: exp.Expression) -> float:
        return -float(literal.this.this) if isinstance(literal, exp.Neg) else float(literal.this)

    if isinstance(node, exp.Between) and _is_score(node.this):
        return ScoreRange(number(node.args["low"]), number(node.args["high"]))
    if isinstance(node, (exp.GT, exp.GTE)) and _is_score(node.this):
        return ScoreRange(low=number(node.expression))
    if isinstance(node, (exp.LT, exp.LTE)) and _is_score(node.this):
        return ScoreRange(high=number(node.expression))
    if isinstance(node, exp.EQ) and _is_score(node.this):
        return ScoreRange(number(node.expression), number(node.expression))
    return None


def _narrowest(ranges: list[ScoreRange]) -> ScoreRange:
    lows = [r.low for r in ranges if r.low is not None]
    highs = [r.high for r in ranges if r.high is not None]
    return ScoreRange(max(lows) if lows else None, min(highs) if highs else None)


def _orders_by_similarity(tree: exp.Select, aliases: dict) -> bool:
    """Whether the first ORDER BY key is similarity, descending."""
    order = tree.args.get("order")
    if not order:
        return False
    first = order.expressions[0]
    key = first.this
    if isinstance(key, exp.Column) and not key.table and key.name in aliases:
        key = aliases[key.name]
    return bool(first.args.get("desc")) and _is_score(key)


def _output_name(item: exp.Expression) -> str:
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column):
        return item.name
    if _is_similarity(item):
        return SCORE
    return item.sql(dialect=DIALECT, normalize_functions="lower")


def _relational(sql: str, tree: exp.Select, limit: int | None) -> tuple[str, list[str]]:
    """The statement as DuckDB runs it over SOURCE: similarity(...) is the source's score, and
    every unnamed expression is named by its text. A row is a mapping (JSON): no name twice."""
    names = [_output_name(item) for item in tree.expressions]
    for i, name in enumerate(names):
        if name in names[:i] and name != "*":
            raise refuse(sql, tree.expressions[i], f"a second output column named {name!r} (name it with AS)")
    named = tree.copy()
    named.set("expressions", [item if isinstance(item, (exp.Alias, exp.Column, exp.Star)) else
                              exp.alias_(item, name, quoted=True) for item, name in zip(named.expressions, names)])
    named = named.transform(lambda n: exp.column(SCORE) if _is_similarity(n) else n)
    named.find(exp.Table).replace(exp.to_table(SOURCE))
    if limit is None:
        named = named.limit(MAX_RESULTS + 1)
    return named.sql(dialect=DIALECT), names


def parse_query(sql: str, columns: Mapping[str, set[str]], params: dict | None = None) -> ParsedQuery:
    """Parse and check a statement against `columns`: the served collections (aliases) the
    database holds, each with its scalar columns. Raises QueryError."""
    tree = parse(sql)
    table = _table(sql, tree, columns)
    tree = _with_params(sql, tree, params or {})
    checker = _Checker(sql, tree, columns[table])
    aggregated = checker.check()
    limit = _count(sql, tree.args.get("limit"), "LIMIT")
    offset = _count(sql, tree.args.get("offset"), "OFFSET") or 0

    where = tree.args.get("where")
    conditions = list(_conjuncts(where.this)) if where else []
    plain = [c for c in conditions if not any(_is_score(n) for n in c.walk())]
    thresholds = [_threshold(c) for c in conditions if any(_is_score(n) for n in c.walk())]
    pushed = [c for c in plain if _milvus_can(c)]
    kept = exp.and_(*plain, copy=True) if plain else None  # an OR among them is parenthesised
    milvus = exp.and_(*pushed, copy=True) if pushed else None
    items = tree.expressions
    only_count = (len(items) == 1 and isinstance(items[0].unalias(), exp.Count)
                  and isinstance(items[0].unalias().this, exp.Star))
    if only_count and not any(tree.args.get(a) for a in ("group", "having", "order", "limit", "offset", "distinct")) \
            and checker.similarity is None:
        plan = COUNT
    elif (checker.similarity and not aggregated and not tree.args.get("distinct") and limit is not None
          and _orders_by_similarity(tree, checker.aliases)
          and all(t is not None and t.high is None for t in thresholds)):
        plan = TOP_K  # lower bounds keep a prefix of the ranking: the top k then the threshold is exact
    else:
        plan = SCAN
    relational, names = _relational(sql, tree, limit)
    star = any(isinstance(item, exp.Star) for item in items)
    return ParsedQuery(
        table=table, plan=plan, similarity=checker.similarity,
        filter=MilvusFilter(sql, columns[table])(milvus) if milvus else "",
        complete_filter=len(pushed) == len(plain),
        where=kept.sql(dialect=DIALECT) if kept else "",
        scores=_narrowest([t for t in thresholds if t is not None]),
        columns=None if star else sorted(checker.read),
        k=(limit or 0) + offset,
        relational=relational, capped=limit is None, names=names,
    )


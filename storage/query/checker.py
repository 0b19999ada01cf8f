"""Checking a statement: every clause, column, function and grouping, before anything runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp

from storage.schema import SCORE
from .errors import refuse

QUERY_KINDS = ("TEXT", "VIDEO", "ID")
AGGREGATES = (exp.Count, exp.Min, exp.Max, exp.Avg, exp.Sum, exp.ArgMax, exp.ArgMin)
FUNCTIONS = "similarity, count, min, max, avg, sum, arg_max, arg_min; in WHERE array_contains"
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


@dataclass(frozen=True)
class Similarity:
    kind: str  # TEXT | VIDEO | ID
    value: str

    def __str__(self) -> str:
        return f"{self.kind}({self.value!r})"


def is_similarity(node: exp.Expression) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.lower() == "similarity"


def is_score(node: exp.Expression) -> bool:
    return is_similarity(node) or (isinstance(node, exp.Column) and not node.table and node.name == SCORE)


def grouped_column(tree: exp.Select, node: exp.Expression) -> exp.Column | None:
    """A GROUP BY key as the column it groups by: a column name, or the position of a SELECT item
    that is a column (as DuckDB reads `GROUP BY 1`); None for anything else."""
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        position = int(node.this)
        node = tree.expressions[position - 1].unalias() if 1 <= position <= len(tree.expressions) else None
    return node if isinstance(node, exp.Column) and not node.table else None


def _unaggregated(node: exp.Expression) -> Iterator[exp.Expression]:
    """The columns and similarity calls of `node` outside any aggregate."""
    if isinstance(node, AGGREGATES):
        return
    if isinstance(node, exp.Column) or is_similarity(node):
        yield node
        return
    for child in node.iter_expressions():
        yield from _unaggregated(child)


class Checker:
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
        if is_similarity(node):
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
        if isinstance(node, exp.ArrayContains):  # a list column (the tags of `vidx tag`) holds a value
            if not isinstance(node.this, exp.Column):
                raise refuse(self.sql, node.this, "array_contains takes a list column, then a value")
            self.column(node.this, clause, in_aggregate=False)
            return self.literal(node.expression)
        operand = node.this if isinstance(node, COMPARISONS + (exp.In, exp.Between, exp.Like, exp.Is)) else None
        if operand is None or (isinstance(node, exp.In) and node.args.get("query")):
            raise refuse(self.sql, node, f"not supported in {clause}")
        if clause == "WHERE" and not (isinstance(operand, exp.Column) or is_similarity(operand)):
            raise refuse(self.sql, operand, "expected a column name")
        self.value(operand, clause)
        scored = is_score(operand)
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
            column = grouped_column(self.tree, node)
            if column is None:
                if isinstance(node, exp.Literal) and not node.is_string:
                    raise refuse(self.sql, node, "GROUP BY position out of range, or not a column of SELECT")
                raise refuse(self.sql, node, "GROUP BY takes column names or positions")
            if column.name not in self.columns:
                raise refuse(self.sql, node, f"unknown column (known: {', '.join(sorted(self.columns))})")
            self.read.add(column.name)
            grouped.add(column.name)
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
                if not (isinstance(node, exp.Column) and (node.name in grouped or
                                                          (aliases and node.name in self.aliases))):
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

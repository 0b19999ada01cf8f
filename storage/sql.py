"""The SQL-like dialect: one-table SELECT parsed with sqlglot, turned into a Milvus call.

    SELECT video_id, start_s, score FROM videos
    WHERE duration_s > 10 AND tag IN ('news') ORDER BY similarity(TEXT('a goal')) DESC LIMIT 20

WHERE becomes a Milvus filter expression (every literal re-quoted, so no input changes its
structure); ORDER BY similarity(TEXT(..) | VIDEO(..) | ID(..)) DESC becomes the vector search.
Anything else is refused with a QueryError naming the offending part and where it is.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.tokens import Tokenizer

from errors import UserError

from .filters import literal
from .schema import DEFAULT_LIMIT, MAX_RESULTS, SCORE, TABLES

QUERY_KINDS = ("TEXT", "VIDEO", "ID")
INT64 = (-(2**63), 2**63 - 1)  # Milvus' integer range
QUOTES = "'\"`"
NEWLINE = "\n"
# sqlglot's names for SELECT clauses outside the dialect -> what the error calls them.
UNSUPPORTED_CLAUSES = {"joins": "JOIN", "group": "GROUP BY", "having": "HAVING", "distinct": "DISTINCT",
                       "with": "WITH", "windows": "WINDOW", "qualify": "QUALIFY", "laterals": "LATERAL"}


class QueryError(UserError):
    """A statement outside the dialect; the message names the offending token and its position."""


@dataclass(frozen=True)
class ParsedQuery:
    table: str
    fields: list[str]  # output columns; empty means all
    filter: str  # Milvus filter expression; "" for none
    similarity: tuple[str, str] | None  # ("TEXT" | "VIDEO" | "ID", value) or None: a filtered scan
    limit: int
    offset: int


def _where_is(sql: str, node: exp.Expression) -> str:
    """'line L, column C' of the node's first word in the statement. sqlglot records offsets only on
    identifiers and literals, so the word is searched for, taking the last occurrence at or before
    the earliest offset recorded under the node (the same name may also appear earlier)."""
    starts = [n.meta["start"] for n in node.walk() if "start" in n.meta]
    word = re.match(r"[\w.:]+|\S", node.sql().lstrip(", ("))
    pattern = r"(?<![\w.])" + re.escape(word.group()) if word else None
    found = [m.start() for m in re.finditer(pattern, sql, re.IGNORECASE)] if pattern else []
    if starts:
        before = [at for at in found if at <= min(starts)]
        start = before[-1] if before else min(starts)
    elif found:
        start = found[0]
    else:
        return "an unknown position"
    return _line_column(sql, start)


def _line_column(sql: str, offset: int) -> str:
    line_start = sql.rfind("\n", 0, offset)  # -1 on the first line
    return f"line {sql.count(NEWLINE, 0, offset) + 1}, column {offset - line_start}"


def _refuse(sql: str, node: exp.Expression, what: str) -> QueryError:
    return QueryError(f"{what}: {node.sql()!r} at {_where_is(sql, node)}")


class _Translator:
    """WHERE clause -> Milvus expression, checking every column and operator on the way."""

    BINARY = {exp.EQ: "==", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
              exp.And: "and", exp.Or: "or"}

    def __init__(self, sql: str, columns: set[str], params: dict):
        self.sql, self.columns, self.params = sql, columns, params

    def literal(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Placeholder):
            if node.name not in self.params:
                raise _refuse(self.sql, node, f"no value given for parameter :{node.name}")
            return literal(self.params[node.name])
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
            return "-" + self.literal(node.this)
        if isinstance(node, exp.Boolean):
            return literal(node.this)
        if isinstance(node, exp.Literal):
            return literal(node.this) if node.is_string else literal(self.number(node))
        raise _refuse(self.sql, node, "expected a literal or :parameter")

    def number(self, node: exp.Literal) -> int | float:
        """4, 2.5, 1e5, 2.5E-3: an int when it is written as one, else a float; both within Milvus' range."""
        try:
            value = int(node.this)
        except ValueError:
            value = float(node.this)
        if not math.isfinite(value) or (isinstance(value, int) and not INT64[0] <= value <= INT64[1]):
            raise _refuse(self.sql, node, "number out of range")
        return value

    def column(self, node: exp.Expression) -> str:
        if not isinstance(node, exp.Column) or node.table:
            raise _refuse(self.sql, node, "expected a column name")
        if node.name not in self.columns:
            raise _refuse(self.sql, node, f"unknown column (known: {', '.join(sorted(self.columns))})")
        return node.name

    def __call__(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Paren):
            return f"({self(node.this)})"
        if isinstance(node, exp.Not):
            return f"not ({self(node.this)})"
        if isinstance(node, (exp.And, exp.Or)):
            return f"({self(node.this)} {self.BINARY[type(node)]} {self(node.expression)})"
        if type(node) in self.BINARY:
            return f"{self.column(node.this)} {self.BINARY[type(node)]} {self.literal(node.expression)}"
        if isinstance(node, exp.In) and not node.args.get("query"):
            return f"{self.column(node.this)} in [{', '.join(self.literal(v) for v in node.expressions)}]"
        if isinstance(node, exp.Between):
            name = self.column(node.this)
            return f"({name} >= {self.literal(node.args['low'])} and {name} <= {self.literal(node.args['high'])})"
        if isinstance(node, exp.Like):
            return f"{self.column(node.this)} like {self.literal(node.expression)}"
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return f"{self.column(node.this)} is null"
        raise _refuse(self.sql, node, "not supported in WHERE")


def _similarity(sql: str, order: exp.Order | None, params: dict) -> tuple[str, str] | None:
    if order is None:
        return None
    [ordered] = order.expressions if len(order.expressions) == 1 else [None]
    call = ordered.this if ordered is not None else order
    if (ordered is None or not ordered.args.get("desc") or not isinstance(call, exp.Anonymous)
            or call.name.lower() != "similarity" or len(call.expressions) != 1):
        raise _refuse(sql, call, "ORDER BY takes only similarity(TEXT(..) | VIDEO(..) | ID(..)) DESC")
    inner = call.expressions[0]
    if not isinstance(inner, exp.Anonymous) or inner.name.upper() not in QUERY_KINDS or len(inner.expressions) != 1:
        raise _refuse(sql, inner, "similarity() takes TEXT('...'), VIDEO('path') or ID('video_id')")
    value = json.loads(_Translator(sql, set(), params).literal(inner.expressions[0]))
    return inner.name.upper(), str(value)


def _count(sql: str, node: exp.Expression | None, name: str, default: int) -> int:
    if node is None:
        return default
    value = node.expression
    if not isinstance(value, exp.Literal) or value.is_string or not value.this.isdigit():
        raise _refuse(sql, value, f"{name} takes a whole number")
    if int(value.this) > MAX_RESULTS:
        raise _refuse(sql, value, f"{name} is at most {MAX_RESULTS}")
    return int(value.this)


def _check_shape(sql: str, tree: exp.Expression, columns: Mapping[str, set[str]]) -> str:
    if isinstance(tree, exp.Block):
        raise _refuse(sql, tree.expressions[1], "one statement at a time")
    if not isinstance(tree, exp.Select):
        raise _refuse(sql, tree, "only SELECT is supported")
    for arg, clause in UNSUPPORTED_CLAUSES.items():
        if tree.args.get(arg):
            node = tree.args[arg]
            raise _refuse(sql, node[0] if isinstance(node, list) else node, f"{clause} is not supported")
    nested = [s for s in tree.find_all(exp.Select, exp.Subquery) if s is not tree]
    if nested:
        raise _refuse(sql, nested[0], "subqueries are not supported")
    source = tree.args.get("from_") or tree.args.get("from")
    table = source.this if source is not None and isinstance(source.this, exp.Table) else None
    if table is None or table.name not in columns:
        if table is not None and table.name in TABLES:
            raise _refuse(sql, table, "no such collection in the database (load one with `vidx load`)")
        raise _refuse(sql, table or source or tree, f"FROM takes one of {', '.join(TABLES)} or a collection "
                                                    "loaded with `vidx load --collection NAME`")
    return table.name


def _unreadable(sql: str) -> QueryError:
    """sqlglot's tokenizer says only that it failed: the culprit starts where its last token ended."""
    tokenizer = Tokenizer()
    try:
        tokenizer.tokenize(sql)
    except sqlglot.errors.TokenError:
        pass
    read = tokenizer.tokens[-1].end + 1 if tokenizer.tokens else 0
    at = read + len(sql[read:]) - len(sql[read:].lstrip())
    char = sql[at:at + 1]
    what = f"a {char} quote that is never closed" if char and char in QUOTES else "unreadable text"
    return QueryError(f"syntax error at {_line_column(sql, at)}: {what}: {sql[at:at + 20]!r}")


def _parse(sql: str) -> exp.Expression:
    try:
        return sqlglot.parse_one(sql)
    except sqlglot.errors.TokenError:
        raise _unreadable(sql) from None
    except sqlglot.errors.ParseError as e:
        if not e.errors:  # nothing but blanks, comments or semicolons: no position to point at
            raise QueryError("empty statement: expected SELECT ... FROM videos or captions") from None
        first = e.errors[0]
        raise QueryError(f"syntax error at line {first['line']}, column {first['col']}: near "
                         f"{first['highlight']!r} ({first['description']})") from None


def parse_query(sql: str, columns: Mapping[str, set[str]], params: dict | None = None) -> ParsedQuery:
    """Parse and check a statement against `columns`: the served collections (aliases) the
    database holds, each with its scalar columns. Raises QueryError."""
    params = params or {}
    tree = _parse(sql)
    table = _check_shape(sql, tree, columns)
    known = columns[table] | {SCORE}
    fields = []
    for item in tree.expressions:
        if isinstance(item, exp.Star):
            continue
        if not isinstance(item, exp.Column) or item.name not in known:
            raise _refuse(sql, item, "SELECT takes column names, 'score' or *")
        fields.append(item.name)
    where = tree.args.get("where")
    return ParsedQuery(
        table=table,
        fields=fields,
        filter=_Translator(sql, columns[table], params)(where.this) if where else "",
        similarity=_similarity(sql, tree.args.get("order"), params),
        limit=_count(sql, tree.args.get("limit"), "LIMIT", DEFAULT_LIMIT),
        offset=_count(sql, tree.args.get("offset"), "OFFSET", 0),
    )

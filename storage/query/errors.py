"""Parsing a statement, and refusals that name the offending part and where it is."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.tokens import Tokenizer

from errors import UserError

QUOTES = "'\"`"
NEWLINE = "\n"
# The dialect sqlglot reads: DuckDB's, the engine that runs what Milvus does not (relational.py).
DIALECT = "duckdb"


class QueryError(UserError):
    """A statement outside the dialect; the message names the offending token and its position."""


def where_is(sql: str, node: exp.Expression) -> str:
    """'line L, column C' of the node's first word in the statement. sqlglot records offsets only on
    identifiers and literals, so the word is searched for, taking the last occurrence at or before
    the earliest offset recorded under the node (the same name may also appear earlier)."""
    starts = [n.meta["start"] for n in node.walk() if "start" in n.meta]
    word = re.match(r"[\w.:]+|\S", node.sql(dialect=DIALECT).lstrip(", ("))
    pattern = r"(?<![\w.])" + re.escape(word.group()) if word else None
    found = [m.start() for m in re.finditer(pattern, sql, re.IGNORECASE)] if pattern else []
    if starts:
        before = [at for at in found if at <= min(starts)]
        start = before[-1] if before else min(starts)
    elif found:
        start = found[0]
    else:
        return "an unknown position"
    return line_column(sql, start)


def line_column(sql: str, offset: int) -> str:
    line_start = sql.rfind("\n", 0, offset)  # -1 on the first line
    return f"line {sql.count(NEWLINE, 0, offset) + 1}, column {offset - line_start}"


def refuse(sql: str, node: exp.Expression, what: str) -> QueryError:
    return QueryError(f"{what}: {node.sql(dialect=DIALECT)!r} at {where_is(sql, node)}")


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
    return QueryError(f"syntax error at {line_column(sql, at)}: {what}: {sql[at:at + 20]!r}")


def parse(sql: str) -> exp.Expression:
    try:
        return sqlglot.parse_one(sql, read=DIALECT)
    except sqlglot.errors.TokenError:
        raise _unreadable(sql) from None
    except sqlglot.errors.ParseError as e:
        if not e.errors:  # nothing but blanks, comments or semicolons: no position to point at
            raise QueryError("empty statement: expected SELECT ... FROM videos or captions") from None
        first = e.errors[0]
        raise QueryError(f"syntax error at line {first['line']}, column {first['col']}: near "
                         f"{first['highlight']!r} ({first['description']})") from None

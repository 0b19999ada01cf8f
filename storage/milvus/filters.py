"""Milvus filter expressions: the one writer of a literal, and the filters vidx builds from it.

Every value that enters a filter goes through `literal`, so no input changes the expression's
structure (the SQL-like dialect's WHERE clause included, storage/query/milvus_filter.py).
"""

from __future__ import annotations

from collections.abc import Iterable


# What `literal` escapes inside a string.
ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def literal(value) -> str:
    """A Milvus literal for a Python value. A string is double-quoted with `\\`, `"` and the two
    characters Milvus' grammar forbids raw (line feed, carriage return) escaped; every other
    character it reads as it is. (JSON's quoting writes \\u escapes for control characters, which
    Milvus refuses: a video id with a \\x1e in it was a 400.)"""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).translate(ESCAPES) + '"'


def equals(column: str, value) -> str:
    return f"{column} == {literal(value)}"


def is_in(column: str, values: Iterable) -> str:
    return f"{column} in [{', '.join(literal(v) for v in values)}]"

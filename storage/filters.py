"""Milvus filter expressions: the one writer of a literal, and the filters vidx builds from it.

Every value that enters a filter goes through `literal`, so no input changes the expression's
structure (the SQL-like dialect's WHERE clause included, storage/sql/milvus_filter.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable


def literal(value) -> str:
    """A Milvus literal for a Python value; strings are JSON-quoted, which escapes quotes too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def equals(column: str, value) -> str:
    return f"{column} == {literal(value)}"


def is_in(column: str, values: Iterable) -> str:
    return f"{column} in [{', '.join(literal(v) for v in values)}]"

"""WHERE conditions -> a Milvus filter expression, checking every column and operator on the way.

Every literal goes through storage.milvus.filters.literal (re-quoted), so no input changes the
expression's structure.
"""

from __future__ import annotations

import math

from sqlglot import exp

from storage.milvus.filters import literal
from .errors import refuse

INT64 = (-(2**63), 2**63 - 1)  # Milvus' integer range
BINARY = {exp.EQ: "==", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
          exp.And: "and", exp.Or: "or"}


def number(sql: str, node: exp.Literal) -> int | float:
    """4, 2.5, 1e5, 2.5E-3: an int when it is written as one, else a float; both within Milvus' range."""
    try:
        value = int(node.this)
    except ValueError:
        value = float(node.this)
    if not math.isfinite(value) or (isinstance(value, int) and not INT64[0] <= value <= INT64[1]):
        raise refuse(sql, node, "number out of range")
    return value


class MilvusFilter:
    """One WHERE condition (placeholders already replaced by values) -> a Milvus expression."""

    def __init__(self, sql: str, columns: set[str]):
        self.sql, self.columns = sql, columns

    def literal(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
            return "-" + self.literal(node.this)
        if isinstance(node, exp.Boolean):
            return literal(node.this)
        if isinstance(node, exp.Literal):
            return literal(node.this) if node.is_string else literal(number(self.sql, node))
        raise refuse(self.sql, node, "expected a literal or :parameter")

    def column(self, node: exp.Expression) -> str:
        if not isinstance(node, exp.Column) or node.table:
            raise refuse(self.sql, node, "expected a column name")
        if node.name not in self.columns:
            raise refuse(self.sql, node, f"unknown column (known: {', '.join(sorted(self.columns))})")
        return node.name

    def __call__(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Paren):
            return f"({self(node.this)})"
        if isinstance(node, exp.Not):
            return f"not ({self(node.this)})"
        if isinstance(node, (exp.And, exp.Or)):
            return f"({self(node.this)} {BINARY[type(node)]} {self(node.expression)})"
        if type(node) in BINARY:
            return f"{self.column(node.this)} {BINARY[type(node)]} {self.literal(node.expression)}"
        if isinstance(node, exp.In) and not node.args.get("query"):
            return f"{self.column(node.this)} in [{', '.join(self.literal(v) for v in node.expressions)}]"
        if isinstance(node, exp.Between):
            name = self.column(node.this)
            return f"({name} >= {self.literal(node.args['low'])} and {name} <= {self.literal(node.args['high'])})"
        if isinstance(node, exp.ArrayContains):
            return f"array_contains({self.column(node.this)}, {self.literal(node.expression)})"
        if isinstance(node, exp.Like):
            return f"{self.column(node.this)} like {self.literal(node.expression)}"
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return f"{self.column(node.this)} is null"
        raise refuse(self.sql, node, "not supported in WHERE")

"""WHERE's column conditions over Arrow columns: which rows of the exact copy a filter keeps.

The second translator of the one parsed WHERE (the first writes a Milvus filter, milvus_filter.py):
each condition becomes Arrow compute kernels over the copy's columns, in SQL's three-valued logic
(a comparison with a null is null, NOT null is null, and only true keeps a row), as DuckDB evaluates
it, without starting a DuckDB query (what that costs on the exact copy: docs/benchmarks.md, "SQL
queries under filters"). A condition whose meaning could differ between the two (a value of another
type than its column, which DuckDB casts; a LIKE pattern with a backslash, which Arrow reads as an
escape) is not translated: the caller asks DuckDB. The property test holds the two to the same rows
(test_query_doors.py).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

COMPARISONS = {exp.EQ: pc.equal, exp.NEQ: pc.not_equal, exp.GT: pc.greater, exp.GTE: pc.greater_equal,
               exp.LT: pc.less, exp.LTE: pc.less_equal}


class Untranslated(Exception):
    """A condition this translator leaves to DuckDB."""


def _value(node: exp.Expression):
    """A literal as Python: a string, an int or float as written, a bool."""
    if isinstance(node, exp.Neg):
        return -_value(node.this)
    if isinstance(node, exp.Boolean):
        return node.this
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        try:
            return int(node.this)
        except ValueError:
            return float(node.this)
    raise Untranslated(node.sql())


def _same_kind(column: pa.ChunkedArray | pa.Array, value) -> None:
    """Arrow and DuckDB agree when a value has its column's kind; DuckDB casts across kinds."""
    kind = column.type
    agrees = ((pa.types.is_string(kind) or pa.types.is_large_string(kind)) and isinstance(value, str)) or \
        (pa.types.is_boolean(kind) and isinstance(value, bool)) or \
        ((pa.types.is_integer(kind) or pa.types.is_floating(kind)) and isinstance(value, (int, float))
         and not isinstance(value, bool))
    if not agrees:
        raise Untranslated(f"{value!r} against {kind}")


class ArrowFilter:
    """The conditions (plain column conditions, parameters already values) over `table`'s columns."""

    def __init__(self, table: pa.Table):
        self.table = table

    def column(self, node: exp.Expression) -> pa.ChunkedArray:
        if not isinstance(node, exp.Column) or node.name not in self.table.column_names:
            raise Untranslated(node.sql())
        return self.table[node.name]

    def compared(self, node: exp.Expression, value_node: exp.Expression):
        column, value = self.column(node), _value(value_node)
        _same_kind(column, value)
        return column, value

    def __call__(self, node: exp.Expression):
        """A boolean array (nulls where SQL's answer is null)."""
        if isinstance(node, exp.Paren):
            return self(node.this)
        if isinstance(node, exp.And):
            return pc.and_kleene(self(node.this), self(node.expression))
        if isinstance(node, exp.Or):
            return pc.or_kleene(self(node.this), self(node.expression))
        if isinstance(node, exp.Not):
            return pc.invert(self(node.this))
        if type(node) in COMPARISONS:
            return COMPARISONS[type(node)](*self.compared(node.this, node.expression))
        if isinstance(node, exp.Between):
            column, low = self.compared(node.this, node.args["low"])
            _, high = self.compared(node.this, node.args["high"])
            return pc.and_kleene(pc.greater_equal(column, low), pc.less_equal(column, high))
        if isinstance(node, exp.In):
            column = self.column(node.this)
            values = [_value(v) for v in node.expressions]
            for value in values:
                _same_kind(column, value)
            found = pc.is_in(column, value_set=pa.array(values, column.type))
            return pc.if_else(pc.is_null(column), pa.scalar(None, pa.bool_()), found)  # NULL IN (..) is null
        if isinstance(node, exp.Like):
            column, pattern = self.compared(node.this, node.expression)
            if "\\" in pattern:
                raise Untranslated(pattern)
            return pc.match_like(column, pattern)
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return pc.is_null(self.column(node.this))
        if isinstance(node, exp.ArrayContains):
            return self.contains(self.column(node.this), _value(node.expression))
        raise Untranslated(node.sql())

    def contains(self, lists: pa.ChunkedArray, value) -> pa.Array:
        """Whether each list holds `value` (null for a null list), as DuckDB's array_contains."""
        lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
        if not pa.types.is_list(lists.type):
            raise Untranslated(str(lists.type))
        _same_kind(lists.values, value)
        held = np.zeros(len(lists), bool)
        hits = pc.equal(pc.list_flatten(lists), value).to_numpy(zero_copy_only=False)
        held[pc.list_parent_indices(lists).to_numpy()[np.asarray(hits, bool)]] = True
        return pc.if_else(pc.is_null(lists), pa.scalar(None, pa.bool_()), pa.array(held))


def arrow_matches(table: pa.Table, conditions: exp.Expression) -> np.ndarray:
    """The positions of the rows of `table` that `conditions` keep, ascending. Raises Untranslated
    for what DuckDB should judge."""
    try:
        kept = ArrowFilter(table)(conditions)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise Untranslated(str(e)) from e
    return np.flatnonzero(pc.fill_null(kept, False).to_numpy(zero_copy_only=False))

"""The relational step of a query: DuckDB over Arrow rows, and the exact copy's filter.

What Milvus does not do (grouping, aggregates, HAVING, ordering by columns, DISTINCT), DuckDB
does over the rows a query's source returns (storage/query/statement.py). A source may be a table
in memory or a stream of record batches (a Milvus query iterator): DuckDB reads a stream once,
batch by batch, so a whole-collection aggregate holds the groups, not the rows.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from storage.milvus.errors import RowStream
from storage.query import SOURCE, QueryError

# One in-memory database per process; each call takes its own cursor (a server runs queries in threads).
_DATABASE = duckdb.connect()
# The row number the exact copy's filter returns.
ROW = "__row"


def _plain(table: pa.Table) -> pa.Table:
    """DuckDB's sums of integers are 128-bit (Arrow decimals): whole numbers become int64, others float64."""
    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type):
            try:
                column = table.column(i).cast(pa.int64() if field.type.scale == 0 else pa.float64())
            except pa.ArrowInvalid:  # a sum beyond int64
                column = table.column(i).cast(pa.float64())
            table = table.set_column(i, field.name, column)
    return table


def run_relational(statement: str, source: pa.Table | RowStream) -> pa.Table:
    """`statement` (over the relation SOURCE) run by DuckDB over `source`'s rows. A stream that
    failed while DuckDB read it raises its own error (the database's), not DuckDB's account of it."""
    cursor = _DATABASE.cursor()
    try:
        cursor.register(SOURCE, source.reader if isinstance(source, RowStream) else source)
        return _plain(cursor.sql(statement).to_arrow_table())
    except duckdb.Error as e:  # types the statement mixes (a number compared with text), for one
        if isinstance(source, RowStream) and source.error is not None:
            raise source.error from None
        raise QueryError(f"the statement cannot run: {str(e).splitlines()[0]}") from e
    finally:
        cursor.close()


def matching_rows(rows: pa.Table, where: str) -> np.ndarray:
    """The positions of the rows `where` (DuckDB SQL over `rows`' columns) keeps, ascending."""
    numbered = rows.append_column(ROW, pa.array(np.arange(rows.num_rows)))
    kept = run_relational(f"SELECT {ROW} FROM {SOURCE} WHERE {where}", numbered)
    return np.sort(kept.column(ROW).to_numpy())  # DuckDB's threads return them in any order

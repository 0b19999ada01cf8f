"""DuckDB's step of a query: over tables and over streams that may fail part-way."""

from __future__ import annotations

import grpc
import pyarrow as pa
import pytest
from pymilvus.exceptions import MilvusException

from errors import Unavailable
from storage.milvus.errors import RowStream, VectorStoreError
from storage.query.relational import matching_rows, run_relational
from storage.query import QueryError

SCHEMA = pa.schema([("genre", pa.string()), ("n", pa.int64())])


class Down(grpc.RpcError):
    """What pymilvus raises under its own error when the server stops answering."""


def batches(failure: BaseException | None):
    yield pa.record_batch([pa.array(["a", "b"]), pa.array([1, 2])], schema=SCHEMA)
    if failure is not None:
        raise failure
    yield pa.record_batch([pa.array(["a"]), pa.array([4])], schema=SCHEMA)


def test_a_stream_is_aggregated_batch_by_batch_and_sums_are_plain_integers():
    rows = run_relational("SELECT genre, sum(n) AS total FROM source GROUP BY genre ORDER BY genre",
                          RowStream(SCHEMA, batches(None), "http://db"))
    assert rows.to_pylist() == [{"genre": "a", "total": 5}, {"genre": "b", "total": 2}]
    assert rows.schema.field("total").type == pa.int64()  # DuckDB's sum is a 128-bit decimal


def refused_by_milvus() -> MilvusException:
    return MilvusException(code=65535, message="cannot parse expression")


def unreachable() -> MilvusException:
    error = MilvusException(code=2, message="server unavailable")
    error.__cause__ = Down()
    return error


@pytest.mark.parametrize("failure, raised", [(refused_by_milvus(), VectorStoreError), (unreachable(), Unavailable),
                                             (MemoryError("out of memory"), MemoryError)])
def test_a_stream_that_fails_part_way_raises_what_failed(failure, raised):
    """Not DuckDB's account of it: a database gone is a 503, not a bad statement."""
    with pytest.raises(raised):
        run_relational("SELECT count(*) FROM source", RowStream(SCHEMA, batches(failure), "http://db"))


def test_a_statement_mixing_types_is_one_line_of_bad_input():
    with pytest.raises(QueryError, match="^the statement cannot run: Conversion Error") as error:
        run_relational("SELECT * FROM source WHERE n = 'seven'", pa.Table.from_batches(list(batches(None))))
    assert "\n" not in str(error.value)


def test_matching_rows_are_the_positions_the_condition_keeps():
    table = pa.Table.from_batches(list(batches(None)))
    assert matching_rows(table, "genre = 'a'").tolist() == [0, 2]
    assert matching_rows(table, "n > 10").tolist() == []

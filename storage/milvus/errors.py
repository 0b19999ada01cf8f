"""How vidx reports what the vector database does wrong: a database that failed or never answered
is Unavailable (exit 1, HTTP 503); a request it refused is bad input (VectorStoreError, exit 2,
HTTP 400). Also the stream of rows a scan reads, which keeps its error for the caller.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import grpc
import pyarrow as pa
from pymilvus.exceptions import ConnectError, MilvusException, MilvusUnavailableException

from errors import Unavailable, UserError, causes, one_line


class VectorStoreError(UserError):
    """The database cannot do what was asked of it (no such collection, a filter it refuses, a
    column it cannot hold); the message says why."""


def unreachable(error: BaseException) -> bool:
    """Whether the database never answered: a gRPC failure (pymilvus retries those, then raises
    a MilvusException caused by one), or pymilvus' own connection errors."""
    return any(isinstance(cause, (grpc.RpcError, ConnectError, MilvusUnavailableException)) for cause in causes(error))


def reason(error: BaseException) -> str:
    """pymilvus' own message where it has one (its str() wraps the message in the class and code)."""
    return " ".join(error.message.split()) if isinstance(error, MilvusException) else one_line(error)


def classified(error: BaseException, uri: str, call: str, refused: str | None) -> Exception:
    """A database error as vidx reports it: Unavailable when the database failed or never answered;
    with `refused`, a request it answered with an error is bad input (VectorStoreError)."""
    if refused and not unreachable(error):
        return VectorStoreError(f"{refused}: {reason(error)}")
    return Unavailable(f"vector database {uri} failed ({call}): {reason(error)}")


def database_errors(refused: str | None = None):
    """Method decorator: database errors raised as classified says."""
    def decorate(method):
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except (MilvusException, grpc.RpcError) as e:
                raise classified(e, self.uri, method.__name__, refused) from e
        return call
    return decorate


class RowStream:
    """Record batches read from Milvus as the reader (DuckDB) asks for them. DuckDB reports a stream
    that failed only as text, so the error is kept here (`error`, classified) for the caller to raise."""

    def __init__(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch], uri: str):
        self.error: Exception | None = None
        self.uri = uri
        self.reader = pa.RecordBatchReader.from_batches(schema, self._kept_errors(batches))

    def _kept_errors(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except (MilvusException, grpc.RpcError) as e:
            self.error = classified(e, self.uri, "scan", "Milvus refused the query")
            raise
        except Exception as e:
            self.error = e
            raise

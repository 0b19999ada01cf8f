"""a SQL-like SELECT against the served collections (README: The query dialect): a door onto the query engine."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pydantic import Field

from storage.options import cli, db_field
from storage.query.questions import QueryFormat, Statement


class Arguments(Statement):
    db: str = db_field()
    format: QueryFormat = Field("table", description="how the rows are written")
    output: str | None = Field(None, description="write the rows to this file (default: standard output)")
    as_json: bool = Field(False, description="the same as --format json", json_schema_extra=cli(flag="--json"))


def query_table(db: str, sql: str, params: dict | None = None) -> pa.Table:
    """The rows of a statement."""
    from encoders.recorded import RecordedModels
    from storage.milvus.store import VectorStore
    from storage.query.engine import Engine

    with VectorStore(db, create=False) as store:
        return Engine(store, RecordedModels()).query(sql, params)


def explain_query(db: str, sql: str, params: dict | None = None) -> dict:
    """The steps a statement becomes on this database (what --explain prints)."""
    from storage.milvus.store import VectorStore
    from storage.query.engine import Engine

    with VectorStore(db, create=False) as store:
        return Engine(store).explain(sql, params)


def run_query(db: str, sql: str, params: dict | None = None, explain_only: bool = False) -> list[dict] | dict:
    """The rows of a statement as dicts, or with `explain_only` the steps it becomes: /query's answer."""
    return explain_query(db, sql, params) if explain_only else query_table(db, sql, params).to_pylist()


def run(arguments: Arguments) -> bytes | dict | None:
    from storage.query.formats import formatted

    if arguments.explain:
        return explain_query(arguments.db, arguments.sql, arguments.params)
    rows = formatted(query_table(arguments.db, arguments.sql, arguments.params),
                     "json" if arguments.as_json else arguments.format)
    if arguments.output is None:
        return rows
    Path(arguments.output).write_bytes(rows)
    return None

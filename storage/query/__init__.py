"""The query engine: questions (statements and searches) -> one plan -> one executor (engine.py).

    statement.py, checker.py, errors.py  the SQL-like dialect: a statement parsed, checked, made a Question
    questions.py                          the options of a search and a statement; a search as a Question
    milvus_filter.py, arrow_filter.py     WHERE -> a Milvus filter; WHERE over the exact copy's columns
    plan.py                               where a Question runs, and what --explain shows
    engine.py                             the executor: the source (exact copy or Milvus), then DuckDB
    relational.py                         DuckDB over the source's rows
    served.py                             the collections a database serves, described once per question
    formats.py                            answers as a table, JSON, CSV or Parquet; hits one line each

The names below need no Milvus client: the command line imports them to parse a command.
"""

from storage.milvus.scores import ScoreRange

from .checker import Similarity
from .errors import QueryError
from .statement import COUNT, SCAN, SOURCE, TOP_GROUPS, TOP_K, Question, parse_query

__all__ = ["COUNT", "SCAN", "SOURCE", "TOP_GROUPS", "TOP_K", "QueryError", "Question", "ScoreRange", "Similarity",
           "parse_query"]

"""The SQL-like dialect (storage/sql/statement.py): what a statement means, and who runs which part."""

from .errors import QueryError
from .statement import COUNT, SCAN, SOURCE, TOP_GROUPS, TOP_K, ParsedQuery, ScoreRange, Similarity, parse_query

__all__ = ["COUNT", "SCAN", "SOURCE", "TOP_GROUPS", "TOP_K", "ParsedQuery", "QueryError", "ScoreRange", "Similarity",
           "parse_query"]

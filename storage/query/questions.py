"""The options of the two questions, a search and a statement, and the Question a search asks.

A search (text, video or video id; k; a filter; one hit per video) is asked through `vidx search`,
/search and the page; a statement through `vidx query` and /query.

A search is a statement built from its parts, `SELECT * FROM <target> WHERE <where> ORDER BY
similarity(<query>) DESC LIMIT k`, checked and planned as any statement is (statement.py): the
same rows as `vidx query` gives for it, through every door. One hit per video keeps each video's
best row: the best rows until they hold k videos, then DuckDB's row_number() per video.

`where` is the dialect's WHERE. A filter written in Milvus' spelling reads as its SQL twin: `==`
is SQL's `=` already, `in [..]` its `IN (..)`, and a double-quoted "value" where the dialect takes
a value (after a comparison, in IN, LIKE or array_contains; a column never stands there) is a
string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal, get_args

from pydantic import Field
from sqlglot import exp

from storage.options import Options, cli
from storage.schema import (CORPUS_NAME, MAX_RESULTS, MAX_SQL, MAX_TEXT, SCORE, TABLES, VIDEOS,
                            check_corpus_name)

from .errors import QueryError, parse, refuse
from .statement import SCAN, TOP_GROUPS, TOP_K, Question, question_of, relational_sql

# What `vidx query --format` writes the rows as (formats.py).
QueryFormat = Literal["table", "json", "csv", "parquet"]
QUERY_FORMATS = get_args(QueryFormat)
# The group of one hit per video.
PER_VIDEO = "video_id"
# Where the dialect takes a value, not a column: the second operand of these.
VALUE_TAKERS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ArrayContains)


class Search(Options):
    """The options of a search: `vidx search`, /search and the page, and search() all read them."""

    text: str | None = Field(None, max_length=MAX_TEXT, description="a caption to find videos for")
    video: str | None = Field(None, max_length=MAX_TEXT, description="a video file or URL to find similar videos "
                              "(or captions) for; over HTTP, a video_id or uri of the library")
    video_id: str | None = Field(None, max_length=MAX_TEXT, description="an indexed video to find similar videos for")
    target: str = Field(VIDEOS, pattern=CORPUS_NAME,
                        description=f"search the videos, their captions, or a corpus NAME (vidx texts); one of "
                                    f"{', '.join(TABLES)} or a corpus")
    k: int = Field(10, ge=1, le=MAX_RESULTS, description="results", json_schema_extra=cli(flag="-k"))
    where: str = Field("", max_length=MAX_SQL, description="a filter in SQL, as a query's WHERE: "
                       "\"direction = 'up' AND duration_s > 10\"")
    per_video: bool = Field(False, description="one hit per video, at its best segment")

    def query(self) -> tuple[str, str]:
        """(kind, value): TEXT, VIDEO or ID, the one given."""
        given = [(kind, value) for kind, value in (("TEXT", self.text), ("VIDEO", self.video), ("ID", self.video_id))
                 if value is not None]
        if len(given) != 1:
            raise QueryError("give exactly one of --text, --video, --video-id")
        return given[0]


class Statement(Options):
    """The options of a statement: `vidx query`, /query and query() all read them."""

    sql: str = Field(..., max_length=MAX_SQL, description="SELECT ... FROM videos|captions|COLLECTION [WHERE ...] "
                     "[GROUP BY ... [HAVING ...]] [ORDER BY similarity(TEXT(..)) DESC | column | aggregate ...] "
                     "[LIMIT n [OFFSET m]] (README: The query dialect)", json_schema_extra=cli(positional=True))
    params: dict[str, str | int | float] = Field(
        default_factory=dict, description="a value for :NAME", json_schema_extra=cli(flag="--param", metavar="NAME=VALUE"))
    explain: bool = Field(False, description="the steps the statement becomes (its source, then DuckDB) instead "
                                             "of rows")


def _as_sql(condition: exp.Expression) -> exp.Expression:
    """Milvus' "value" as SQL's 'value' where a value stands (see the module's docstring)."""
    def as_string(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.this.args.get("quoted"):
            return exp.Literal.string(node.name)
        return node

    def spelled(node: exp.Expression) -> exp.Expression:
        if isinstance(node, VALUE_TAKERS):
            node.set("expression", as_string(node.expression))
        elif isinstance(node, exp.In):
            node.set("expressions", [as_string(value) for value in node.expressions])
        return node
    return condition.transform(spelled, copy=True)


def parse_where(where: str) -> exp.Expression:
    """A search's filter as a condition; refused (a QueryError with its place in `where`) when it is none."""
    condition = parse(where)
    if not isinstance(condition, exp.Condition) or isinstance(condition, (exp.Select, exp.Column, exp.Literal)):
        raise refuse(where, condition, "expected a condition, as a query's WHERE takes")
    return _as_sql(condition)


def check_target(target: str) -> str:
    """A search's target: a table, or a corpus' name (refused when it cannot be one)."""
    return target if target in TABLES else check_corpus_name(target)


def search_question(search: Search, alias: str, columns: Mapping[str, set[str]]) -> Question:
    """The Question `search` asks of the collection served as `alias` (its videos, captions or corpus)."""
    check_target(search.target)
    kind, value = search.query()
    similarity = exp.Anonymous(this="similarity", expressions=[
        exp.Anonymous(this=kind, expressions=[exp.Literal.string(value)])])
    tree = exp.select("*").from_(exp.to_table(alias, quoted=False)).limit(search.k)
    tree = tree.order_by(exp.Ordered(this=similarity, desc=True))
    if search.where.strip():
        tree = tree.where(parse_where(search.where))
    question = question_of(search.where, tree, alias, columns)
    if not search.per_video or search.target != VIDEOS:
        return question
    best = exp.Window(this=exp.RowNumber(), partition_by=[exp.column(PER_VIDEO)],
                      order=exp.Order(expressions=[exp.Ordered(this=exp.column(SCORE), desc=True)]))
    per_video = tree.copy()
    per_video.set("qualify", exp.Qualify(this=exp.EQ(this=best, expression=exp.Literal.number(1))))
    return replace(question, plan=TOP_GROUPS if question.plan == TOP_K else SCAN, groups=[PER_VIDEO],
                   relational=relational_sql(per_video))

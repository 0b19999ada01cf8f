"""The SQL-like dialect: translation to Milvus calls, and refusals that point at the problem."""

from __future__ import annotations

import pytest

from storage.sql import QueryError, parse_query

COLUMNS = {"videos": {"video_id", "duration_s", "tag", "start_s", "segment"}, "captions": {"caption_id", "text"}}


def test_the_design_example_becomes_a_filtered_vector_search():
    parsed = parse_query("SELECT video_id, start_s, score FROM videos WHERE duration_s > 10 AND tag IN ('news') "
                         "ORDER BY similarity(TEXT('a goal in a football match')) DESC LIMIT 20", COLUMNS)
    assert parsed.table == "videos" and parsed.fields == ["video_id", "start_s", "score"]
    assert parsed.filter == '(duration_s > 10 and tag in ["news"])'
    assert parsed.similarity == ("TEXT", "a goal in a football match")
    assert (parsed.limit, parsed.offset) == (20, 0)


@pytest.mark.parametrize("where, expected", [
    ("tag = 'x' OR NOT segment <> 0", '(tag == "x" or not (segment != 0))'),
    ("duration_s BETWEEN 1 AND 2.5", "(duration_s >= 1 and duration_s <= 2.5)"),
    ("tag LIKE 'ne%'", 'tag like "ne%"'),
    ("tag IS NULL", "tag is null"),
    ("tag IS NOT NULL", "not (tag is null)"),
    ("start_s <= -1.5", "start_s <= -1.5"),
    ("tag = :t", 'tag == "news"'),
    ("duration_s > 1e5 AND start_s < 2.5E-3 AND segment > -4", "((duration_s > 100000.0 and start_s < 0.0025) and "
                                                               "segment > -4)"),
    ("segment = 9223372036854775807", "segment == 9223372036854775807"),
    ("tag = TRUE OR tag != false", "(tag == true or tag != false)"),
])
def test_where_operators(where, expected):
    assert parse_query(f"SELECT * FROM videos WHERE {where}", COLUMNS, {"t": "news"}).filter == expected


def test_string_literals_cannot_change_the_filter_structure():
    hostile = 'x" or video_id != "'
    parsed = parse_query("SELECT * FROM videos WHERE tag = :t", COLUMNS, {"t": hostile})
    assert parsed.filter == 'tag == "x\\" or video_id != \\""'
    quoted = parse_query("SELECT * FROM videos WHERE tag = 'a\\\\\" or 1 == 1'", COLUMNS)
    assert quoted.filter.count('"') - quoted.filter.count('\\"') == 2  # one literal, opened and closed


@pytest.mark.parametrize("sql, message", [
    ("SELECT * FROM videos v JOIN captions c ON v.video_id = c.caption_id", "JOIN is not supported"),
    ("SELECT * FROM videos WHERE video_id IN (SELECT caption_id FROM captions)", "subqueries are not supported"),
    ("SELECT tag FROM videos GROUP BY tag", "GROUP BY is not supported"),
    ("SELECT * FROM videos WHERE lower(tag) = 'x'", "expected a column name: 'LOWER(tag)' at line 1, column 28"),
    ("SELECT * FROM videos WHERE colour = 'x'", "unknown column (known: duration_s, segment, start_s, tag, video_id): "
                                                 "'colour' at line 1, column 28"),
    ("SELECT * FROM videos WHERE tag = ", "syntax error at line 1, column 32"),
    ("SELECT * FROM videos ORDER BY duration_s", "ORDER BY takes only similarity"),
    ("SELECT tag FROM videos\nORDER BY tag", "ORDER BY takes only similarity(TEXT(..) | VIDEO(..) | ID(..)) DESC: "
                                             "'tag' at line 2, column 10"),
    ("SELECT * FROM videos ORDER BY similarity(AUDIO('x')) DESC", "similarity() takes TEXT"),
    ("SELECT * FROM users", "FROM takes one of videos, captions"),
    ("SELECT * FROM videos LIMIT 5000", "LIMIT is at most 1000"),
    ("SELECT * FROM videos WHERE tag = :missing", "no value given for parameter :missing"),
    ("DELETE FROM videos", "only SELECT is supported"),
    ("", "empty statement"),
    ("SELECT * FROM videos WHERE tag = 'x", "syntax error at line 1, column 34: a ' quote that is never closed: \"'x\""),
    ("SELECT * FROM videos WHERE segment > 1e400", "number out of range: '1e400' at line 1, column 38"),
    ("SELECT * FROM videos WHERE segment > 9223372036854775808", "number out of range"),
    ("SELECT * FROM videos; SELECT 1", "one statement at a time: 'SELECT 1' at line 1, column 23"),
])
def test_statements_outside_the_dialect_are_refused_with_the_place(sql, message):
    with pytest.raises(QueryError) as error:
        parse_query(sql, COLUMNS)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_collection_the_database_lacks_is_named_before_its_columns():
    with pytest.raises(QueryError) as error:
        parse_query("SELECT caption_id, nonsense FROM captions", {"videos": COLUMNS["videos"]})
    assert str(error.value) == ("no such collection in the database (load one with `vidx load`): 'captions' at "
                                "line 1, column 34")

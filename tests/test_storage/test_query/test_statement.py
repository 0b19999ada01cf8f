"""The SQL-like dialect: what Milvus and DuckDB each get, and refusals that point at the problem."""

from __future__ import annotations

import pytest

from storage.query import COUNT, SCAN, TOP_GROUPS, TOP_K, QueryError, ScoreRange, Similarity, parse_query

COLUMNS = {"videos": {"video_id", "duration_s", "genre", "start_s", "segment"}, "captions": {"caption_id", "text"}}


def test_the_design_example_becomes_a_filtered_vector_search():
    parsed = parse_query("SELECT video_id, start_s, score FROM videos WHERE duration_s > 10 AND genre IN ('news') "
                         "ORDER BY similarity(TEXT('a goal in a football match')) DESC LIMIT 20 OFFSET 5", COLUMNS)
    assert (parsed.table, parsed.plan, parsed.k) == ("videos", TOP_K, 25)
    assert parsed.filter == '(duration_s > 10 and genre in ["news"])'
    assert parsed.where == "duration_s > 10 AND genre IN ('news')"  # the same conditions, for the exact copy
    assert parsed.similarity == Similarity("TEXT", "a goal in a football match")
    assert parsed.columns == ["duration_s", "genre", "start_s", "video_id"]
    assert parsed.relational == ("SELECT video_id, start_s, score FROM source WHERE duration_s > 10 AND genre IN "
                                 "('news') ORDER BY score DESC LIMIT 20 OFFSET 5")


@pytest.mark.parametrize("sql, plan, scores", [
    ("SELECT count(*) FROM videos WHERE genre = 'x'", COUNT, ScoreRange()),
    ("SELECT count(*) AS n FROM videos", COUNT, ScoreRange()),
    ("SELECT count(*) FROM videos WHERE similarity(ID('v1')) > 0.5", SCAN, ScoreRange(0.5, None)),
    # a lower threshold keeps a prefix of the ranking: still a top-k
    ("SELECT video_id FROM videos WHERE score >= 0.2 ORDER BY similarity(ID('v1')) DESC LIMIT 3", TOP_K,
     ScoreRange(0.2, None)),
    # an upper one does not
    ("SELECT video_id FROM videos WHERE similarity(ID('v1')) < 0.9 ORDER BY score DESC LIMIT 3", SCAN,
     ScoreRange(None, 0.9)),
    ("SELECT video_id FROM videos WHERE score BETWEEN -0.1 AND 0.4 AND similarity(ID('v1')) > 0 ORDER BY score DESC",
     SCAN, ScoreRange(0, 0.4)),
    ("SELECT video_id FROM videos WHERE genre = 'x' OR similarity(ID('v1')) > 0.3 ORDER BY score DESC LIMIT 3", SCAN,
     ScoreRange()),
    # the best segment per video: the best rows until they hold LIMIT videos, on a server
    ("SELECT video_id, max(similarity(ID('v1'))) AS best FROM videos GROUP BY video_id ORDER BY best DESC LIMIT 3",
     TOP_GROUPS, ScoreRange()),
    ("SELECT video_id, arg_max(start_s, score) AS at, max(similarity(ID('v1'))) FROM videos WHERE score > 0.1 AND "
     "genre = 'x' GROUP BY video_id ORDER BY 3 DESC, video_id LIMIT 3", TOP_GROUPS, ScoreRange(0.1, None)),
    # but not when a group needs all its rows, or any group may come first
    ("SELECT video_id, max(similarity(ID('v1'))) AS best, count(*) FROM videos GROUP BY video_id ORDER BY best DESC "
     "LIMIT 3", SCAN, ScoreRange()),
    ("SELECT video_id, max(similarity(ID('v1'))) AS best FROM videos GROUP BY video_id ORDER BY video_id LIMIT 3",
     SCAN, ScoreRange()),
    ("SELECT video_id, max(similarity(ID('v1'))) AS best FROM videos GROUP BY video_id HAVING max(score) > 0.2 "
     "ORDER BY best DESC LIMIT 3", SCAN, ScoreRange()),
    ("SELECT similarity(ID('v1')) AS s, video_id FROM videos ORDER BY s DESC LIMIT 3", TOP_K, ScoreRange()),
    ("SELECT DISTINCT video_id FROM videos ORDER BY similarity(ID('v1')) DESC LIMIT 3", SCAN, ScoreRange()),
    ("SELECT video_id FROM videos ORDER BY similarity(ID('v1')) ASC LIMIT 3", SCAN, ScoreRange()),
    ("SELECT genre, count(*) FROM videos GROUP BY genre HAVING count(*) > 1 ORDER BY 2 DESC, genre", SCAN, ScoreRange()),
])
def test_what_each_statement_becomes(sql, plan, scores):
    parsed = parse_query(sql, COLUMNS)
    assert (parsed.plan, parsed.scores) == (plan, scores)


def test_group_by_takes_positions_as_order_by_does():
    parsed = parse_query("SELECT genre, count(*) AS n FROM videos GROUP BY 1 ORDER BY 2 DESC", COLUMNS)
    assert (parsed.groups, parsed.columns) == (["genre"], ["genre"])
    assert parsed.relational == 'SELECT genre, COUNT(*) AS n FROM source GROUP BY 1 ORDER BY 2 DESC LIMIT 1001'
    best = parse_query("SELECT video_id, max(similarity(ID('v1'))) AS best FROM videos GROUP BY 1 ORDER BY best DESC "
                       "LIMIT 3", COLUMNS)
    assert (best.plan, best.groups) == (TOP_GROUPS, ["video_id"])


def test_the_relational_step_reads_similarity_as_the_score_and_names_every_column():
    parsed = parse_query("SELECT video_id, max(similarity(TEXT('a'))), arg_max(start_s, score) AS at, count(*) "
                         "FROM videos GROUP BY video_id", COLUMNS)
    assert parsed.names == ["video_id", "max(similarity(text('a')))", "at", "count(*)"]
    assert parsed.relational == ('SELECT video_id, MAX(score) AS "max(similarity(text(\'a\')))", ARG_MAX(start_s, '
                                 'score) AS "at", COUNT(*) AS "count(*)" FROM source GROUP BY video_id LIMIT 1001')
    assert parsed.capped  # no LIMIT: one row past the cap says the answer is too long


@pytest.mark.parametrize("where, expected", [
    ("genre = 'x' OR NOT segment <> 0", '(genre == "x" or not (segment != 0))'),
    ("duration_s BETWEEN 1 AND 2.5", "(duration_s >= 1 and duration_s <= 2.5)"),
    ("genre LIKE 'ne%'", 'genre like "ne%"'),
    ("genre IS NULL", "genre is null"),
    ("genre IS NOT NULL", "not (genre is null)"),
    ("start_s <= -1.5", "start_s <= -1.5"),
    ("genre = :t", 'genre == "news"'),
    ("duration_s > 1e5 AND start_s < 2.5E-3 AND segment > -4", "((duration_s > 100000.0 and start_s < 0.0025) and "
                                                               "segment > -4)"),
    ("segment = 9223372036854775807", "segment == 9223372036854775807"),
    ("genre = TRUE OR genre != false", "(genre == true or genre != false)"),
])
def test_where_operators(where, expected):
    assert parse_query(f"SELECT * FROM videos WHERE {where}", COLUMNS, {"t": "news"}).filter == expected


def test_string_literals_cannot_change_the_filter_structure():
    hostile = 'x" or video_id != "'
    parsed = parse_query("SELECT * FROM videos WHERE genre = :t", COLUMNS, {"t": hostile})
    assert parsed.filter == 'genre == "x\\" or video_id != \\""'
    quoted = parse_query("SELECT * FROM videos WHERE genre = 'a\\\\\" or 1 == 1'", COLUMNS)
    assert quoted.filter.count('"') - quoted.filter.count('\\"') == 2  # one literal, opened and closed


@pytest.mark.parametrize("sql, message", [
    ("SELECT * FROM videos v JOIN captions c ON v.video_id = c.caption_id", "JOIN is not supported"),
    ("SELECT * FROM videos WHERE video_id IN (SELECT caption_id FROM captions)", "subqueries are not supported"),
    ("SELECT video_id, count(*) FROM videos", "must be in GROUP BY or inside an aggregate: 'video_id' at line 1, "
                                              "column 8"),
    ("SELECT genre, count(*) FROM videos GROUP BY genre ORDER BY duration_s",
     "must be in GROUP BY or inside an aggregate: 'duration_s' at line 1, column 60"),
    ("SELECT video_id, score FROM videos WHERE similarity(TEXT('a')) > 0.1\nORDER BY similarity(ID('v1')) DESC "
     "LIMIT 3", "one similarity per statement (this one differs from TEXT('a')): \"SIMILARITY(ID('v1'))\" at line 2, "
                "column 10"),
    ("SELECT upper(genre) FROM videos", "unknown function upper() (known: similarity, count, min, max, avg, sum, "
                                      "arg_max, arg_min; in WHERE array_contains): 'UPPER(genre)' at line 1, column 8"),
    ("SELECT video_id, score FROM videos LIMIT 3", "score needs a similarity(TEXT(..) | VIDEO(..) | ID(..)) in the "
                                                   "statement: 'score' at line 1, column 18"),
    ("SELECT * FROM videos GROUP BY genre", "SELECT * cannot be grouped"),
    ("SELECT genre, max(min(duration_s)) FROM videos GROUP BY genre", "an aggregate inside an aggregate"),
    ("SELECT * FROM videos WHERE similarity(TEXT('a')) LIKE 'x'", "similarity is compared with numbers"),
    ("SELECT * FROM videos WHERE similarity(TEXT('a')) > 'high'", "expected a number: \"'high'\""),
    ("SELECT genre FROM videos WHERE count(*) > 1", "expected a column name"),
    ("SELECT genre FROM videos GROUP BY genre HAVING duration_s > 1", "must be in GROUP BY or inside an aggregate"),
    ("SELECT genre FROM videos HAVING genre = 'x'", "HAVING needs GROUP BY or an aggregate"),
    ("SELECT count(DISTINCT genre) FROM videos", "DISTINCT inside an aggregate is not supported"),
    ("SELECT genre FROM videos ORDER BY 3", "ORDER BY position out of range"),
    ("SELECT genre FROM videos GROUP BY lower(genre)", "GROUP BY takes column names"),
    ("SELECT genre, count(*) FROM videos GROUP BY 2", "GROUP BY position out of range, or not a column of SELECT: '2'"),
    ("SELECT genre FROM videos GROUP BY 3", "GROUP BY position out of range"),
    ("SELECT min(segment), max(segment), min(segment) FROM videos", "a second output column named 'min(segment)' "
                                                                    "(name it with AS): 'MIN(segment)' at line 1, "
                                                                    "column 36"),
    ("SELECT * FROM videos WHERE lower(genre) = 'x'", "expected a column name: 'LOWER(genre)' at line 1, column 28"),
    ("SELECT * FROM videos WHERE colour = 'x'", "unknown column (known: duration_s, genre, score, segment, start_s, "
                                                 "video_id): 'colour' at line 1, column 28"),
    ("SELECT * FROM videos WHERE genre = ", "syntax error at line 1, column 34"),
    ("SELECT genre FROM videos\nORDER BY colour", "unknown column (known: duration_s, genre, score, segment, start_s, "
                                                "video_id): 'colour' at line 2, column 10"),
    ("SELECT * FROM videos ORDER BY similarity(AUDIO('x')) DESC", "similarity() takes TEXT"),
    ("SELECT * FROM users", "FROM takes one of videos, captions"),
    ("SELECT * FROM videos LIMIT 5000", "LIMIT is at most 1000"),
    ("SELECT * FROM videos WHERE genre = :missing", "no value given for parameter :missing"),
    ("DELETE FROM videos", "only SELECT is supported"),
    ("", "empty statement"),
    ("SELECT * FROM videos WHERE genre = 'x", "syntax error at line 1, column 36: a ' quote that is never closed: \"'x\""),
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

"""`vidx query` on a served index: filters select exactly what the Parquet selects, both engines answer
alike, tags filter videos, every output format holds the same rows; refusals in one line."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from cli import cli_error, cli_json
from corpora import stored_tags
from jobs.__main__ import main
from jobs.query import query_table, run_query
from storage.milvus.store import VectorStore
from storage.query.questions import QUERY_FORMATS
from storage.schema import TEXT_KEY
from storage.table.dataset import read_live


@pytest.fixture(scope="module")
def rows(loaded) -> list[dict]:
    output, _ = loaded
    return [r for r in pq.read_table(output / "videos").to_pylist() if r["status"] == "ok"]


# (SQL, the same predicate in Python) pairs over the synth metadata and segment columns.
ATOMS = [
    ("colour = 'red'", lambda r: r["colour"] == "red"),
    ("colour <> 'blue'", lambda r: r["colour"] != "blue"),
    ("shape IN ('circle', 'square')", lambda r: r["shape"] in ("circle", "square")),
    ("segment >= 1", lambda r: r["segment"] >= 1),
    ("start_s < 2", lambda r: r["start_s"] < 2),
    ("end_s BETWEEN 2 AND 4", lambda r: 2 <= r["end_s"] <= 4),
    ("direction LIKE 'u%'", lambda r: r["direction"].startswith("u")),
    ("background IS NOT NULL", lambda r: r["background"] is not None),
]


def atoms_for(db: str) -> list:
    """IS [NOT] NULL needs nullable fields: not on Milvus before 2.5 (the IS NULL test below shows the refusal)."""
    return ATOMS if VectorStore(db).nullable else [atom for atom in ATOMS if "NULL" not in atom[0]]


def random_predicate(rng: random.Random, atoms: list, depth: int = 0):
    if depth >= 2 or rng.random() < 0.4:
        return rng.choice(atoms)
    left, right = random_predicate(rng, atoms, depth + 1), random_predicate(rng, atoms, depth + 1)
    kind = rng.choice(["AND", "OR", "NOT"])
    if kind == "NOT":
        return f"NOT ({left[0]})", lambda r, f=left[1]: not f(r)
    if kind == "AND":
        return f"({left[0]}) AND ({right[0]})", lambda r, f=left[1], g=right[1]: f(r) and g(r)
    return f"({left[0]}) OR ({right[0]})", lambda r, f=left[1], g=right[1]: f(r) or g(r)


def test_random_filters_select_exactly_the_rows_the_predicate_selects(loaded, rows):
    _, db = loaded
    rng = random.Random(0)
    for _ in range(40):
        sql_where, predicate = random_predicate(rng, atoms_for(db))
        got = run_query(db, f"SELECT key FROM videos WHERE {sql_where} LIMIT 1000")
        expected = {r["key"] for r in rows if predicate(r)}
        assert {r["key"] for r in got} == expected, sql_where


def test_random_filtered_vector_searches_never_return_violating_rows(loaded, rows):
    _, db = loaded
    by_key = {r["key"]: r for r in rows}
    rng = random.Random(1)
    for _ in range(15):
        sql_where, predicate = random_predicate(rng, atoms_for(db))
        got = run_query(db, f"SELECT key, score FROM videos WHERE {sql_where} "
                            "ORDER BY similarity(TEXT('a shape moves')) DESC LIMIT 5")
        assert all(predicate(by_key[r["key"]]) for r in got), sql_where
        assert [r["score"] for r in got] == sorted((r["score"] for r in got), reverse=True)


def test_limit_offset_and_field_order(loaded):
    _, db = loaded
    ranked = run_query(db, "SELECT video_id, score FROM videos ORDER BY similarity(TEXT('red')) DESC LIMIT 6")
    page = run_query(db, "SELECT video_id, score FROM videos ORDER BY similarity(TEXT('red')) DESC LIMIT 3 OFFSET 3")
    assert [r["video_id"] for r in page] == [r["video_id"] for r in ranked[3:]]
    assert list(page[0]) == ["video_id", "score"]
    everything = run_query(db, "SELECT * FROM videos WHERE segment = 0 LIMIT 2")
    assert len(everything) == 2 and {"key", "video_id", "colour"} <= set(everything[0])
    assert "embedding" not in everything[0]


def test_cli_explain_and_refusal(loaded, capsys):
    _, db = loaded
    plan = cli_json(capsys, "query", "--db", db, "--explain", "--param", "c=red",
                    "SELECT video_id FROM videos WHERE colour = :c LIMIT 2")
    source, relational = plan["steps"]
    if VectorStore(db).is_lite:  # the exact copy, filtered by DuckDB
        assert source == {"method": "exact copy: filter", "collection": "videos", "filter": "colour = 'red'",
                          "columns": ["colour", "video_id"]}
    else:
        assert source == {"method": "Milvus query iterator, batch by batch", "collection": "videos",
                          "filter": 'colour == "red"', "columns": ["colour", "video_id"]}
    assert plan["plan"] == "scan" and relational["sql"] == ("SELECT video_id FROM source WHERE colour = 'red' "
                                                            "LIMIT 2")
    line = cli_error(capsys, "query", "--db", db, "SELECT video_id, count(*) FROM videos")
    assert line == "must be in GROUP BY or inside an aggregate: 'video_id' at line 1, column 8"


def test_a_parameter_without_a_value(loaded, capsys):
    _, db = loaded
    assert cli_error(capsys, "query", "--db", db, "--param", "colour", "SELECT * FROM videos") == \
        "--param 'colour': expected NAME=VALUE"


@pytest.mark.parametrize("output_format", QUERY_FORMATS)
def test_every_output_format_holds_the_same_rows(loaded, output_format, tmp_path, capsys):
    _, db = loaded
    sql = "SELECT colour, count(*) AS n, max(end_s) AS longest FROM videos GROUP BY colour ORDER BY colour"
    expected = run_query(db, sql)
    assert len(expected) > 1 and list(expected[0]) == ["colour", "n", "longest"]
    written = tmp_path / f"rows.{output_format}"
    assert main(["query", "--db", db, "--format", output_format, "--output", str(written), sql]) == 0
    if output_format == "json":
        assert json.loads(written.read_text()) == expected
    elif output_format == "csv":
        assert pa_csv.read_csv(written).to_pylist() == expected
    elif output_format == "parquet":
        assert pq.read_table(written).to_pylist() == expected
    else:  # a table a person reads: a header, then one line per row
        lines = written.read_text().splitlines()
        assert "colour" in lines[1] and "longest" in lines[1]
        for row in expected:
            assert any(row["colour"] in line and str(row["n"]) in line for line in lines)


# --- The same index on milvus-lite and on a Milvus server (2.3.5) ---

SQL = [
    "SELECT key, score FROM videos ORDER BY similarity(TEXT('a blue triangle moves down')) DESC LIMIT 8",
    "SELECT key, colour, score FROM videos WHERE colour IN ('red', 'blue') AND segment = 0 "
    "ORDER BY similarity(TEXT('a blue triangle')) DESC LIMIT 5",
    "SELECT key, score FROM videos WHERE start_s >= 2 ORDER BY similarity(ID('synth_11_00003')) DESC LIMIT 6",
]


def test_both_engines_answer_sql_like_queries_alike(lite_db, server_db_loaded, capsys):
    for sql in SQL:
        lite, server = (cli_json(capsys, "query", "--db", db, sql, "--json") for db in (lite_db, server_db_loaded))
        assert [r["key"] for r in lite] == [r["key"] for r in server], sql
        np.testing.assert_allclose([r["score"] for r in lite], [r["score"] for r in server], atol=1e-4)
    scan = "SELECT key, colour, duration_s FROM videos WHERE colour <> 'red' AND duration_s > 1 LIMIT 1000"
    lite, server = (cli_json(capsys, "query", "--db", db, scan, "--json") for db in (lite_db, server_db_loaded))
    assert sorted(lite, key=lambda r: r["key"]) == sorted(server, key=lambda r: r["key"])


def test_is_null_filters_on_a_server_without_nullable_fields_are_one_line_and_exit_2(server_db_loaded, capsys):
    sql = "SELECT key FROM videos WHERE background IS NOT NULL LIMIT 5"
    line = cli_error(capsys, "query", "--db", server_db_loaded, sql)
    assert line.startswith("Milvus refused") and "is null" in line


# --- Tags (`vidx tag`), served as a list column of the videos ---

def test_tags_filter_videos_in_sql(served_corpus):
    index, db = served_corpus
    tags = stored_tags(index, "vocab")
    text_of = {r[TEXT_KEY]: r["text"] for r in read_live(str(index / "texts" / "vocab"), TEXT_KEY).to_pylist()}
    wanted = text_of[max(text_of, key=lambda text_id: sum(t == text_id for _, _, t, _ in tags))]
    holding = sorted({v for v, _, t, _ in tags if text_of[t] == wanted})
    rows = query_table(db, "SELECT video_id, count(*) AS segments FROM videos WHERE array_contains(vocab, :t) "
                           "GROUP BY video_id ORDER BY video_id", {"t": wanted}).to_pylist()
    assert [r["video_id"] for r in rows] == holding
    best = query_table(db, "SELECT video_id, vocab FROM videos WHERE array_contains(vocab, :t) "
                           "ORDER BY similarity(TEXT('a blue square')) DESC LIMIT 2", {"t": wanted}).to_pylist()
    assert best and all(r["video_id"] in holding and wanted in r["vocab"] for r in best)
    first = {v: [text_of[t] for _, t in sorted((rank, t) for video, _, t, rank in tags if video == v)] for v in holding}
    listed = query_table(db, f"SELECT video_id, vocab FROM videos WHERE video_id = '{holding[0]}' LIMIT 1").to_pylist()
    assert listed[0]["vocab"] == first[holding[0]]  # best first

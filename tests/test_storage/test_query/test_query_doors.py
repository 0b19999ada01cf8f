"""One question, every door: generated statements and searches asked through `vidx query`, /query,
`vidx search`, search(), /search (what the page sends) on both engines, against DuckDB over the same
Parquet.

Hypothesis writes statements inside the dialect (filters of every operator, similarity thresholds,
aggregates, groups, HAVING, orders, LIMIT and OFFSET) and searches (a video's neighbours, k, a filter
in SQL or in Milvus' spelling, one hit per video or not) over a generated index of a few thousand
segment rows (tests/query_index.py: exact scores, real ties). Every door must give DuckDB's rows over
the index's Parquet, with similarity(ID(v)) written out as DuckDB's array_inner_product; where SQL
leaves the order of tied rows open, only the order keys and the untied rows are compared. On a
Milvus server a top-k by similarity (of rows, or of groups by their best row) is an approximate
(HNSW) search: its scores, rank by rank, must match the exact ones at least RECALL of the time, and
every door must give the same rows; every other statement is exact there too.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.__main__ import main
from jobs.load import load
from jobs.query import explain_query, query_table
from jobs.search import search
from jobs.server.app import create_app
from query_index import CHANNELS, DIM, KINDS, generated_rows, write_index
from storage.query import TOP_GROUPS, TOP_K, QueryError
from storage.schema import MAX_RESULTS, SCORE

RECALL = 0.9
QUERY_VIDEOS = [f"v{i}" for i in range(0, 600, 37)]
THRESHOLDS = [-1.0, -0.25, 0.0, 0.5, 1.0, 1.5]  # exact multiples of 1/4: rows lie on them (> and >= differ)
EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, duckdb.DuckDBPyConnection]:
    """The index's directory, and DuckDB holding the same rows (table `v`)."""
    directory = write_index(tmp_path_factory.mktemp("generated"), generated_rows())
    reference = duckdb.connect()
    reference.execute(f"CREATE TABLE v AS SELECT * REPLACE (embedding::FLOAT[{DIM}] AS embedding) "
                      f"FROM read_parquet('{directory}/videos/*.parquet')")
    return directory, reference


@pytest.fixture(scope="module", params=["milvus-lite", "milvus-server"])
def db(request, generated) -> str:
    """The generated index loaded into each engine."""
    directory, _ = generated
    if request.param == "milvus-lite":
        uri = str(directory / "vidx.db")
    else:
        from servers import server_database

        uri = server_database(request.getfixturevalue("milvus_server"), "doors")
    load(str(directory), uri)
    return uri


@pytest.fixture(scope="module")
def client(db, tmp_path_factory) -> TestClient:
    with TestClient(create_app(db, cache_dir=tmp_path_factory.mktemp("thumbnails"))) as client:
        yield client


def exact(db: str) -> bool:
    return not db.startswith("http")


def rows(table) -> list[tuple]:
    return [tuple(row.values()) for row in table]


def answer(db: str, sql: str) -> list[tuple]:
    return rows(query_table(db, sql).to_pylist())


# (vidx's text, DuckDB's text) of one condition on the metadata and segment columns.
words = st.sampled_from
channel = words(CHANNELS)
atoms = st.one_of(
    st.builds(lambda c, op: f"channel {op} '{c}'", channel, words(["=", "<>", "<", ">="])),
    st.builds(lambda cs: f"channel IN ({', '.join(repr(c) for c in cs)})", st.lists(channel, min_size=1, max_size=4)),
    st.builds(lambda k: f"kind LIKE '{k[:2]}%'", words(KINDS)),
    st.builds(lambda k: f"kind LIKE '%{k[1:3]}%'", words(KINDS)),
    st.builds(lambda n, op: f"views {op} {n}", st.integers(0, 1000), words(["<", "<=", ">", ">=", "=", "!="])),
    st.builds(lambda a, b: f"duration_s BETWEEN {min(a, b)} AND {max(a, b)}", st.integers(0, 16), st.integers(0, 16)),
    st.builds(lambda s: f"segment >= {s}", st.integers(0, 8)),
    st.builds(lambda s: f"start_s < {s}", st.sampled_from([0, 1.5, 2, 6.0, 10])),
    st.builds(lambda b: f"live = {b}", st.booleans()),
)
conditions = st.recursive(atoms, lambda inner: st.one_of(
    st.builds(lambda a, b: f"({a}) AND ({b})", inner, inner),
    st.builds(lambda a, b: f"({a}) OR ({b})", inner, inner),
    st.builds(lambda a: f"NOT ({a})", inner)), max_leaves=4)
thresholds = st.one_of(
    st.builds(lambda op, t: f"{{S}} {op} {t}", words([">", ">=", "<", "<=", "="]), words(THRESHOLDS)),
    st.builds(lambda a, b: f"{{S}} BETWEEN {min(a, b)} AND {max(a, b)}", words(THRESHOLDS), words(THRESHOLDS)))
GROUPS = ["channel", "kind", "live", "video_id"]
VALUES = ["views", "duration_s", "start_s", "segment"]


@st.composite
def statements(draw) -> tuple[str, list[int], bool]:
    """(statement with {S} for the similarity, positions of its ORDER BY keys among the output
    columns, whether LIMIT or OFFSET cut the answer)."""
    scored = draw(st.booleans())
    where = draw(st.lists(conditions, max_size=2))
    if scored:
        where += draw(st.lists(thresholds, max_size=2))
        if draw(st.booleans()) and where:
            where = [f"({where[0]}) OR ({draw(thresholds)})"] + where[1:]
    shape = draw(words(["rows", "top_k", "groups", "best_groups", "totals", "count", "distinct"]))
    orders: list[tuple[int, str]] = []  # (output position, direction)
    if shape == "groups":
        groups = draw(st.lists(words(GROUPS), min_size=1, max_size=2, unique=True))
        aggregates = draw(st.lists(st.one_of(
            st.just("count(*)"), st.builds(lambda f, c: f"{f}({c})", words(["min", "max", "sum", "avg", "count"]),
                                           words(VALUES + (["{S}"] if scored else [])))),
            min_size=1, max_size=3, unique=True))
        items = groups + [f"{a} AS a{i}" for i, a in enumerate(aggregates)]
        clauses = f" GROUP BY {', '.join(groups)}"
        if draw(st.booleans()):
            clauses += f" HAVING count(*) {draw(words(['>', '<=']))} {draw(st.integers(0, 30))}"
        # every output column as an order key: the order is total, and ties are in the keys
        orders = [(i, draw(words(["ASC", "DESC"]))) for i in draw(st.permutations(range(len(items))))]
    elif shape == "best_groups" and scored:  # the best segment per video, or per channel
        group = draw(words(GROUPS))
        items, clauses = [group, "max({S}) AS best"], f" GROUP BY {group}"
        orders = [(1, "DESC"), (0, "ASC")]
    elif shape == "totals":
        aggregates = draw(st.lists(st.builds(lambda f, c: f"{f}({c})", words(["min", "max", "sum", "avg", "count"]),
                                             words(VALUES + (["{S}"] if scored else []))), min_size=1, max_size=3,
                                   unique=True))
        items, clauses = ["count(*)"] + aggregates, ""
    elif shape == "count":
        items, clauses = ["count(*)"], ""
    elif shape == "distinct":
        items, clauses = draw(st.lists(words(GROUPS), min_size=1, max_size=2, unique=True)), ""
        orders = [(i, "ASC") for i in range(len(items))]
    else:
        items = ["key"] + draw(st.lists(words(VALUES + ["channel", "video_id"]), max_size=2, unique=True))
        if scored:
            items.append("{S} AS s")
        clauses = ""
        if shape == "top_k" and scored:
            orders = [(len(items) - 1, "DESC"), (0, "ASC")]
        elif draw(st.booleans()):
            orders = [(draw(st.integers(1, len(items) - 1)) if len(items) > 1 else 0, draw(words(["ASC", "DESC"]))),
                      (0, "ASC")]
    sql = f"SELECT {'DISTINCT ' if shape == 'distinct' else ''}{', '.join(items)} FROM videos"
    if where:
        sql += f" WHERE {' AND '.join(f'({w})' for w in where)}"
    sql += clauses
    if orders:
        sql += " ORDER BY " + ", ".join(f"{position + 1} {direction}" for position, direction in orders)
    cut = False
    if orders and (shape in ("top_k", "best_groups") or draw(st.booleans())):  # without an order, LIMIT may keep any rows
        sql += f" LIMIT {draw(st.integers(0, 40))}"
        cut = True
        if draw(st.booleans()):
            sql += f" OFFSET {draw(st.integers(0, 20))}"
    return sql, [position for position, _ in orders], cut


def written_out(sql: str, video: str, reference: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    """(vidx's statement, DuckDB's): {S} as vidx takes it (similarity(ID(video)) first, then its
    short name `score` or the call again), and as DuckDB's inner product with the video's first segment."""
    [vector] = reference.execute("SELECT embedding FROM v WHERE key = ?", [f"{video}#0"]).fetchone()
    product = f"array_inner_product(embedding, {list(map(float, vector))}::FLOAT[{len(vector)}])"
    call, parts = f"similarity(ID('{video}'))", sql.split("{S}")
    ours = parts[0] + "".join((call if i % 2 == 0 else SCORE) + part for i, part in enumerate(parts[1:]))
    return ours, sql.replace("{S}", product).replace("FROM videos", "FROM v")


def canonical(value):
    return round(value, 9) if isinstance(value, float) else value


def same_answer(got: list[tuple], expected: list[tuple], order_keys: list[int], cut: bool) -> None:
    got = [tuple(canonical(v) for v in row) for row in got]
    expected = [tuple(canonical(v) for v in row) for row in expected]
    assert len(got) == len(expected)
    if not order_keys:
        assert Counter(got) == Counter(expected)
        return
    keys = [tuple(row[i] for i in order_keys) for row in got]
    assert keys == [tuple(row[i] for i in order_keys) for row in expected]
    for key in set(keys):  # rows tied on every key: any order; at a cut, any of them
        if not cut or key not in (keys[0], keys[-1]):
            assert Counter(r for r, k in zip(got, keys) if k == key) == \
                Counter(r for r in expected if tuple(r[i] for i in order_keys) == key)


def close_answer(got: list[tuple], expected: list[tuple], score: int) -> None:
    """An approximate (HNSW) top-k: as many rows, and the same score at a rank at least RECALL of the time."""
    assert len(got) == len(expected)
    assert sum(canonical(a[score]) == canonical(b[score]) for a, b in zip(got, expected)) >= RECALL * len(expected)


def statement_doors(db: str, client: TestClient, capsys, sql: str) -> list[list[tuple]]:
    """The rows of `sql` through each statement door: query_table(), `vidx query --json`, /query."""
    assert main(["query", "--db", db, "--json", sql]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    http = client.post("/query", json={"sql": sql})
    assert http.status_code == 200, http.text
    return [answer(db, sql), rows(cli), rows(http.json())]


@EXAMPLES
@given(statement=statements(), video=st.sampled_from(QUERY_VIDEOS))
def test_generated_statements_answer_as_duckdb_does_through_every_door(db, client, generated, capsys, statement,
                                                                       video):
    sql, order_keys, cut = statement
    ours, theirs = written_out(sql, video, generated[1])
    expected = generated[1].execute(theirs).fetchall()
    if not cut and len(expected) > MAX_RESULTS:
        with pytest.raises(QueryError, match=f"returns more than {MAX_RESULTS} rows"):
            answer(db, ours)
        return
    got, *others = statement_doors(db, client, capsys, ours)
    # On a server a top-k is an HNSW search, which a server's own compactions may answer a little
    # differently from one call to the next: every door as close to the exact answer as it must be.
    if not exact(db) and explain_query(db, ours)["plan"] in (TOP_K, TOP_GROUPS):
        for door in (got, *others):
            close_answer(door, expected, order_keys[0])
        return
    for door in (got, *others):  # exact: the same rows through every door (ties in any order)
        same_answer(door, expected, order_keys, cut)


def test_the_statements_a_new_user_tried_answer_as_duckdb_does(db, generated):
    reference = generated[1]
    for sql, order_keys, cut in [
        ("SELECT count(*) FROM videos WHERE kind = 'news'", [], False),
        ("SELECT kind, count(*) FROM videos GROUP BY kind", [], False),
        ("SELECT kind, count(*) FROM videos GROUP BY 1", [], False),
        ("SELECT video_id, {S} AS s FROM videos WHERE {S} > 0.5 ORDER BY 2 DESC, 1", [1, 0], False),
        ("SELECT video_id, duration_s FROM videos ORDER BY duration_s DESC, video_id LIMIT 3", [1, 0], True),
        ("SELECT video_id, max({S}) AS best FROM videos GROUP BY video_id ORDER BY best DESC, video_id LIMIT 10",
         [1, 0], True),
        ("SELECT video_id, max({S}) AS best FROM videos GROUP BY 1 ORDER BY best DESC, video_id LIMIT 10",
         [1, 0], True),
    ]:
        ours, theirs = written_out(sql, "v3", reference)
        same_answer(answer(db, ours), reference.execute(theirs).fetchall(), order_keys, cut)


def test_the_best_segment_of_each_video_names_its_start(db, generated):
    """arg_max(start_s, score): the start of a segment scoring the video's best (any of them on a tie)."""
    ours, theirs = written_out("SELECT video_id, max({S}) AS best, arg_max(start_s, {S}) AS at FROM videos "
                               "GROUP BY video_id ORDER BY best DESC, video_id LIMIT 10", "v3", generated[1])
    expected = {row[0]: row[1] for row in generated[1].execute(theirs).fetchall()}
    _, every_segment = written_out("SELECT video_id, start_s, {S} FROM videos", "v3", generated[1])
    best_starts = {(video, start) for video, start, score in generated[1].execute(every_segment).fetchall()
                   if score == expected.get(video)}
    got = answer(db, ours)
    assert {video: best for video, best, _ in got} == expected
    assert all((video, at) in best_starts for video, _, at in got)


# A search's filter: (its SQL, its Milvus spelling), which must mean the same rows.
spelled_atoms = st.one_of(
    st.builds(lambda c: (f"channel = '{c}'", f'channel == "{c}"'), channel),
    st.builds(lambda cs: (f"channel IN ({', '.join(repr(c) for c in cs)})",
                          f"channel in [{', '.join(json.dumps(c) for c in cs)}]"), st.lists(channel, min_size=1, max_size=4)),
    st.builds(lambda k: (f"kind LIKE '{k[:2]}%'", f'kind like "{k[:2]}%"'), words(KINDS)),
    st.builds(lambda n, op: (f"views {op} {n}", f"views {op} {n}"), st.integers(0, 1000), words(["<", ">=", "!="])),
    st.builds(lambda s: (f"segment >= {s}", f"segment >= {s}"), st.integers(0, 8)),
    st.builds(lambda b: (f"live = {b}", f"live == {str(b).lower()}"), st.booleans()),
)
spelled_filters = st.recursive(spelled_atoms, lambda inner: st.one_of(
    st.builds(lambda a, b: (f"({a[0]}) AND ({b[0]})", f"({a[1]}) and ({b[1]})"), inner, inner),
    st.builds(lambda a, b: (f"({a[0]}) OR ({b[0]})", f"({a[1]}) or ({b[1]})"), inner, inner)), max_leaves=3)


def expected_search(reference: duckdb.DuckDBPyConnection, video: str, k: int, where: str,
                    per_video: bool) -> list[tuple]:
    """(key or video_id, score) of the search, best first, by DuckDB over the Parquet."""
    [vector] = reference.execute("SELECT embedding FROM v WHERE key = ?", [f"{video}#0"]).fetchone()
    product = f"array_inner_product(embedding, {list(map(float, vector))}::FLOAT[{len(vector)}])"
    condition = f"WHERE {where}" if where else ""
    if per_video:
        sql = f"SELECT video_id, max({product}) AS score FROM v {condition} GROUP BY video_id"
    else:
        sql = f"SELECT key, {product} AS score FROM v {condition}"
    return reference.execute(f"{sql} ORDER BY score DESC LIMIT {k}").fetchall()


def search_doors(db: str, client: TestClient, capsys, video: str, k: int, where: str,
                 per_video: bool) -> list[list[dict]]:
    """The hits of one search through search(), `vidx search --json`, and /search."""
    argv = ["search", "--db", db, "--video-id", video, "-k", str(k), "--where", where, "--json"]
    assert main(argv + (["--per-video"] if per_video else [])) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    http = client.post("/search", json={"video_id": video, "k": k, "where": where, "per_video": per_video})
    assert http.status_code == 200, http.text
    return [search(db, video_id=video, k=k, where=where, per_video=per_video), cli, http.json()]


@EXAMPLES
@given(video=st.sampled_from(QUERY_VIDEOS), k=st.integers(1, 30), where=st.one_of(st.just(("", "")), spelled_filters),
       milvus_spelling=st.booleans(), per_video=st.booleans())
def test_generated_searches_answer_as_duckdb_does_through_every_door(db, client, generated, capsys, video, k, where,
                                                                     milvus_spelling, per_video):
    sql_where, milvus_where = where
    key = "video_id" if per_video else "key"
    expected = expected_search(generated[1], video, k, sql_where, per_video)
    doors = search_doors(db, client, capsys, video, k, milvus_where if milvus_spelling else sql_where, per_video)
    # The statement the search is: through `vidx query` and /query alike.
    condition = f"WHERE {sql_where} " if sql_where else ""
    if per_video:
        sql = (f"SELECT video_id, max(similarity(ID('{video}'))) AS best FROM videos {condition}GROUP BY video_id "
               f"ORDER BY best DESC LIMIT {k}")
    else:
        sql = f"SELECT key, score FROM videos {condition}ORDER BY similarity(ID('{video}')) DESC LIMIT {k}"
    statements = [[dict(zip((key, SCORE), row)) for row in door] for door in statement_doors(db, client, capsys, sql)]
    hits = [[(hit[key], hit[SCORE]) for hit in door] for door in doors + statements]
    for door in hits:  # every door: exact on the exact copy (ties in any order), close on a server (HNSW)
        if exact(db):
            same_answer(door, expected, [1], cut=True)
        else:
            close_answer(door, expected, 1)
    if per_video:
        assert len({hit["video_id"] for hit in doors[0]}) == len(doors[0])  # one hit per video, at its best row
    assert all(set(hit) >= {"key", "video_id", "segment", "start_s", SCORE} for hit in doors[0])

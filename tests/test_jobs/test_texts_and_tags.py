"""Video->text against any corpus (`vidx texts`) and zero-shot tagging (`vidx tag`): corpora from each
file format, searchable from the CLI, SQL and HTTP on both engines; tags equal to a brute-force
product, incremental, and filterable in SQL."""

from __future__ import annotations

import json
import shutil
from operator import itemgetter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from jobs.__main__ import main
from jobs.load import load
from jobs.query import query_table
from jobs.server.app import create_app
from jobs.pipeline.tag_run import retag
from jobs.tag import tag
from jobs.texts import texts
from storage.table.dataset import list_parts, read_live
from storage.schema import EMBEDDING, TAG_KEY, TEXT_KEY

FORMATS = ["txt", "parquet", "csv", "jsonl"]
PHRASES = ["a red circle moves to the left", "a blue square moves up", "something moves down",
           "a green triangle moves to the right", "a white square moves down", "a yellow circle moves up"]


@pytest.fixture(scope="module")
def index_copy(served_index, tmp_path_factory) -> Path:
    """The session's index (12 synth videos in 2 s segments, tiny model), copied: this module adds
    corpora and tags to it."""
    copy = tmp_path_factory.mktemp("tagged") / "index"
    shutil.copytree(served_index, copy)
    return copy


def write_corpus(directory: Path, fmt: str, phrases: list[str]) -> Path:
    """The phrases as a corpus file of format `fmt`; the tables give ids and a category."""
    table = pa.table({TEXT_KEY: [f"t{i:02d}" for i in range(len(phrases))], "text": phrases,
                      "category": ["motion" if p.startswith("something") else "object" for p in phrases]})
    path = directory / f"{fmt}_corpus.{fmt}"
    if fmt == "txt":
        path.write_text("\n".join(phrases + ["", phrases[0]]) + "\n")  # a blank line and a repeat: one text each
    elif fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "csv":
        pa_csv.write_csv(table, path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
    return path


def cli_json(capsys, *argv: str) -> dict | list:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def brute_force_tags(index: Path, corpus: str, k: int, per_segment: bool) -> list[tuple]:
    """(video_id, segment, text_id, rank) of every tag, by numpy alone: scores as inner products,
    a video's score its best segment's (the first such), ties by text_id."""
    videos = read_live(str(index / "videos"), columns=["key", "video_id", "segment", "status", "run_id", EMBEDDING])
    videos = videos.filter(pa.compute.equal(videos["status"], "ok")).to_pylist()
    corpus_rows = sorted(read_live(str(index / "texts" / corpus), TEXT_KEY).to_pylist(), key=lambda r: r[TEXT_KEY])
    matrix = np.array([r[EMBEDDING] for r in corpus_rows], np.float32)
    best: dict[tuple, dict[int, tuple[float, int]]] = {}
    for row in videos:
        scores = np.array(row[EMBEDDING], np.float32) @ matrix.T
        group = (row["video_id"], row["segment"]) if per_segment else (row["video_id"],)
        for t, score in enumerate(scores):
            held = best.setdefault(group, {}).get(t)
            if held is None or (score, -row["segment"]) > (held[0], -held[1]):
                best[group][t] = (float(score), row["segment"])
    tags = []
    for group, by_text in best.items():
        ranked = sorted(by_text.items(), key=lambda item: (-item[1][0], item[0]))[:k]
        tags += [(group[0], segment, corpus_rows[t][TEXT_KEY], rank) for rank, (t, (_, segment)) in enumerate(ranked, 1)]
    return sorted(tags)


def stored_tags(index: Path, corpus: str) -> list[tuple]:
    rows = read_live(str(index / "tags" / corpus), TAG_KEY).to_pylist()
    return sorted((r["video_id"], r["segment"], r[TEXT_KEY], r["rank"]) for r in rows)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_corpus_from_each_format_is_encoded_once(index_copy, tmp_path, capsys, fmt):
    path = write_corpus(tmp_path, fmt, PHRASES)
    first = cli_json(capsys, "texts", "--input", str(path), "--output", str(index_copy))
    assert (first["corpus"], first["texts"], first["encoded"]) == (f"{fmt}_corpus", len(PHRASES), len(PHRASES))
    stored = read_live(str(index_copy / "texts" / f"{fmt}_corpus"), TEXT_KEY)
    assert sorted(stored["text"].to_pylist()) == sorted(PHRASES)
    if fmt != "txt":
        assert set(stored["category"].to_pylist()) == {"motion", "object"}
    again = cli_json(capsys, "texts", "--input", str(path), "--output", str(index_copy))
    assert (again["encoded"], again["reused"]) == (0, len(PHRASES))


def test_an_edited_corpus_encodes_only_its_new_texts_and_drops_the_gone(index_copy, tmp_path):
    path = write_corpus(tmp_path, "txt", PHRASES[:4])
    path = path.rename(tmp_path / "edited.txt")
    texts(str(path), str(index_copy))
    path.write_text("\n".join(PHRASES[1:5]) + "\n")
    stats = texts(str(path), str(index_copy))
    assert (stats["encoded"], stats["reused"]) == (1, 3)
    assert sorted(read_live(str(index_copy / "texts" / "edited"), TEXT_KEY)["text"].to_pylist()) == sorted(PHRASES[1:5])


def test_a_corpus_of_another_model_is_refused_in_one_line(index_copy, tmp_path, capsys):
    path = write_corpus(tmp_path, "txt", PHRASES)
    assert main(["texts", "--input", str(path), "--output", str(index_copy), "--model", "demo"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the indexed videos by" in err and "Traceback" not in err, err


@pytest.mark.parametrize("bad, reason", [
    ("empty.txt", "no texts"), ("notext.csv", "no 'text' column"), ("dup.jsonl", "duplicate text_id 'a'"),
    ("missing.txt", "not found"), ("corpus.doc", "a corpus is .txt"),
])
def test_a_bad_corpus_is_one_line(index_copy, tmp_path, capsys, bad, reason):
    contents = {"empty.txt": "\n\n", "notext.csv": "label\nx\n",
                "dup.jsonl": '{"text_id": "a", "text": "x"}\n{"text_id": "a", "text": "y"}\n', "corpus.doc": "x"}
    if bad in contents:
        (tmp_path / bad).write_text(contents[bad])
    assert main(["texts", "--input", str(tmp_path / bad), "--output", str(index_copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and reason in err, err


@pytest.mark.parametrize("per_segment", [False, True])
def test_tags_equal_a_brute_force_product_with_ties_in_text_id_order(index_copy, tmp_path, per_segment):
    # "z" and "y" hold the same text: tied on every video, they rank in text_id order
    table = pa.table({TEXT_KEY: [f"p{i}" for i in range(len(PHRASES))] + ["z", "y"],
                      "text": PHRASES + [PHRASES[2], PHRASES[2]]})
    pq.write_table(table, tmp_path / "ties.parquet")
    texts(str(tmp_path / "ties.parquet"), str(index_copy))
    stats = tag(str(index_copy), "ties", top_k=len(PHRASES) + 2, per_segment=per_segment)
    assert stats["videos_scored"] == 12 and stats["texts_added"] == len(PHRASES) + 2
    assert stored_tags(index_copy, "ties") == brute_force_tags(index_copy, "ties", len(PHRASES) + 2, per_segment)
    ranks = {(v, s, t): r for v, s, t, r in stored_tags(index_copy, "ties")}
    for video, segment in {(v, s) for v, s, _ in ranks}:
        assert ranks[(video, segment, "y")] + 1 == ranks[(video, segment, "z")]


def test_tagging_is_incremental(index_copy, tmp_path):
    path = tmp_path / "grow.txt"
    path.write_text("\n".join(PHRASES[:3]) + "\n")
    texts(str(path), str(index_copy))
    first = tag(str(index_copy), "grow", top_k=2)
    assert (first["videos_scored"], first["rows_written"]) == (12, 24)
    parts = {p: Path(p).stat().st_mtime_ns for p in list_parts(str(index_copy / "tags" / "grow"))}

    again = tag(str(index_copy), "grow", top_k=2)
    assert (again["videos_scored"], again["videos_merged"], again["rows_written"]) == (0, 0, 0)
    assert {p: Path(p).stat().st_mtime_ns for p in list_parts(str(index_copy / "tags" / "grow"))} == parts

    path.write_text("\n".join(PHRASES[:4]) + "\n")  # one text added: only it is scored
    texts(str(path), str(index_copy))
    added = tag(str(index_copy), "grow", top_k=2)
    assert (added["videos_scored"], added["videos_merged"], added["texts_added"]) == (0, 12, 1)
    assert stored_tags(index_copy, "grow") == brute_force_tags(index_copy, "grow", 2, per_segment=False)

    tagged = [(v, t) for v, _, t, _ in stored_tags(index_copy, "grow")]
    gone = max(PHRASES[:4], key=lambda text: sum(t == text for _, t in tagged))  # a txt corpus' ids are its texts
    path.write_text("\n".join(p for p in PHRASES[:4] if p != gone) + "\n")  # the videos it tagged: scored again
    texts(str(path), str(index_copy))
    removed = tag(str(index_copy), "grow", top_k=2)
    assert (removed["texts_removed"], removed["videos_scored"]) == (1, len({v for v, t in tagged if t == gone}))
    assert stored_tags(index_copy, "grow") == brute_force_tags(index_copy, "grow", 2, per_segment=False)

    changed = tag(str(index_copy), "grow", top_k=3)  # another k: every video again
    assert changed["videos_scored"] == 12
    assert stored_tags(index_copy, "grow") == brute_force_tags(index_copy, "grow", 3, per_segment=False)
    nightly = retag(str(index_copy))["grow"]  # the nightly's step: the last settings, nothing new to score
    assert (nightly["videos_scored"], nightly["rows_written"]) == (0, 0)


def test_min_score_keeps_only_texts_scoring_at_least_it(index_copy, tmp_path):
    path = tmp_path / "scored.txt"
    path.write_text("\n".join(PHRASES) + "\n")
    texts(str(path), str(index_copy))
    tag(str(index_copy), "scored", top_k=2)
    every = read_live(str(index_copy / "tags" / "scored"), TAG_KEY).to_pylist()
    best_of = {r["video_id"]: r["score"] for r in every if r["rank"] == 1}
    threshold = float(np.median(list(best_of.values())))  # half the videos keep a tag or two, half none
    tag(str(index_copy), "scored", top_k=2, min_score=threshold)
    kept = read_live(str(index_copy / "tags" / "scored"), TAG_KEY).to_pylist()
    key = itemgetter("video_id", TEXT_KEY, "rank")
    assert sorted(map(key, kept)) == sorted(key(r) for r in every if r["score"] >= threshold)


@pytest.fixture(scope="module")
def served_corpus(index_copy, tmp_path_factory, db_engines) -> tuple[Path, str]:
    """The index with corpus `vocab` (tagged, top 2) loaded into an engine: (index, database URI)."""
    directory = tmp_path_factory.mktemp("vocab")
    texts(str(write_corpus(directory, "parquet", PHRASES).rename(directory / "vocab.parquet")), str(index_copy))
    for fmt in FORMATS:
        texts(str(write_corpus(directory, fmt, PHRASES)), str(index_copy), name=f"served_{fmt}")
    tag(str(index_copy), "vocab", top_k=2)
    load(str(index_copy), db_engines)
    return index_copy, db_engines


@pytest.fixture(scope="module", params=["milvus-lite", "milvus-server"])
def db_engines(request, tmp_path_factory) -> str:
    if request.param == "milvus-lite":
        return str(tmp_path_factory.mktemp("lite") / "vidx.db")
    from servers import server_database

    return server_database(request.getfixturevalue("milvus_server"), "texts_and_tags")


@pytest.mark.parametrize("corpus", ["vocab", *(f"served_{fmt}" for fmt in FORMATS)])
def test_a_corpus_is_searchable_from_the_cli_sql_and_http(served_corpus, capsys, tmp_path, corpus):
    index, db = served_corpus
    video = "synth_11_00003"
    ranked = sorted((rank, t) for v, segment, t, rank in brute_force_tags(index, corpus, len(PHRASES), True)
                    if (v, segment) == (video, 0))  # a stored video is searched for by its first segment
    expected = [t for _, t in ranked]
    hits = cli_json(capsys, "search", "--db", db, "--video-id", video, "--target", corpus, "-k", "3", "--json")
    assert [hit[TEXT_KEY] for hit in hits] == expected[:3]
    rows = query_table(db, f"SELECT text_id, text, score FROM {corpus} "
                           f"ORDER BY similarity(ID('{video}')) DESC LIMIT 3").to_pylist()
    assert [r[TEXT_KEY] for r in rows] == [hit[TEXT_KEY] for hit in hits]
    with TestClient(create_app(db, cache_dir=tmp_path)) as client:
        library = client.get("/library").json()
        assert library["corpora"][corpus]["rows"] == len(PHRASES)
        answer = client.post("/search", json={"video_id": video, "target": corpus, "k": 3}).json()
        assert [hit[TEXT_KEY] for hit in answer] == [hit[TEXT_KEY] for hit in hits]
        if corpus != "served_txt":  # the tables' metadata is served beside each text
            category = query_table(db, f"SELECT category, count(*) AS n FROM {corpus} GROUP BY category").to_pylist()
            assert {r["category"]: r["n"] for r in category} == {"motion": 1, "object": len(PHRASES) - 1}


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


def test_a_corpus_mismatching_the_videos_model_is_refused_at_load(index_copy, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(index_copy / "videos", other / "videos")
    (tmp_path / "demo.txt").write_text("a red circle\n")
    texts(str(tmp_path / "demo.txt"), str(tmp_path / "solo"), model="demo")  # no videos there: any model
    shutil.copytree(tmp_path / "solo" / "texts" / "demo", other / "texts" / "demo")
    assert main(["load", "--embeddings", str(other), "--db", str(tmp_path / "vidx.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corpus 'demo' is encoded by model" in err, err
    assert not (tmp_path / "vidx.db").exists()  # refused before anything was built


def test_tags_named_as_a_video_column_are_refused_in_one_line(index_copy, tmp_path, capsys):
    (tmp_path / "colour.txt").write_text("red\nblue\n")
    texts(str(tmp_path / "colour.txt"), str(index_copy))  # the synth manifest has a `colour` column
    assert main(["tag", "--embeddings", str(index_copy), "--texts", "colour"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "would be a column the videos already have" in err, err

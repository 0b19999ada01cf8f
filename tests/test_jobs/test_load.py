"""`vidx load`: an index's Parquet -> a validated collection version per served table, then the alias
swapped. Under its own alias (--collection), into a new database's directory, with failed videos,
on each engine; the groups of `vidx duplicates` served as column duplicate_group and a night
serving a changed group; what an engine cannot store and corpora of another model are refused
before anything is built, and a failed check serves nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from cli import cli_error, cli_json
from jobs.__main__ import main
from jobs.duplicates import duplicates
from jobs.load import load
from jobs.query import run_query
from jobs.server.app import create_app
from jobs.texts import texts
from storage.milvus.store import VectorStore
from storage.table.dataset import write_part
from storage.table.runs import new_run_id

TEXT = "a red circle moves to the left"
MODEL = {"spec": {"name": "tiny"}, "fingerprint": "f"}


def test_a_collection_loaded_under_its_own_name_is_searched_queried_and_served_by_it(served_index, lite_db, tmp_path,
                                                                                     capsys):
    """`vidx load --collection NAME` serves an index under another alias, and every reader takes it:
    search and serve by --collection, query by its FROM name; the captions go beside it."""
    db = str(tmp_path / "vidx.db")
    swapped = cli_json(capsys, "load", "--embeddings", str(served_index), "--db", db, "--collection", "library")
    assert set(swapped) == {"library", "library_captions"}
    assert swapped["library"]["collection"].startswith("library_") and swapped["library"]["rows"] > 0

    search = ["search", "--text", TEXT, "-k", "5", "--json"]
    hits = cli_json(capsys, *search, "--db", db, "--collection", "library")
    served_as_videos = cli_json(capsys, *search, "--db", lite_db)  # the same index, served as `videos`
    assert [h["key"] for h in hits] == [h["key"] for h in served_as_videos]
    captions = cli_json(capsys, "search", "--db", db, "--collection", "library", "--target", "captions", "--video-id",
                        hits[0]["video_id"], "-k", "3", "--json")
    assert [h["caption_id"] for h in captions]

    sql = f"SELECT key, score FROM library ORDER BY similarity(TEXT('{TEXT}')) DESC LIMIT 5"
    assert [row["key"] for row in cli_json(capsys, "query", "--db", db, "--json", sql)] == [h["key"] for h in hits]
    captions_sql = "SELECT caption_id, text FROM library_captions LIMIT 2"
    assert len(cli_json(capsys, "query", "--db", db, "--json", captions_sql)) == 2

    with TestClient(create_app(db, cache_dir=tmp_path / "thumbnails", collection="library")) as client:
        assert client.get("/healthz").json()["videos"] == swapped["library"]["collection"]
        assert [h["key"] for h in client.post("/search", json={"text": TEXT, "k": 5}).json()] == [h["key"] for h in hits]
        assert client.get("/library").json()["captions"]["collection"] == swapped["library_captions"]["collection"]

        # Nothing was served as `videos` in this database.
        assert "no collection 'videos'" in cli_error(capsys, "search", "--db", db, "--text", TEXT)


def test_load_creates_the_directory_of_a_new_database(loaded, tmp_path, capsys):
    output, _ = loaded
    db = tmp_path / "new" / "dir" / "v.db"
    assert main(["load", "--embeddings", str(output), "--db", str(db)]) == 0
    assert main(["query", "--db", str(db), "--json", "SELECT key FROM videos WHERE segment = 0 LIMIT 1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('[{"key": ')


def embeddings(directory: Path, n: int = 20, dim: int = 8) -> str:
    vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pa.table({"key": [f"v{i}#0" for i in range(n)], "video_id": [f"v{i}" for i in range(n)],
                      "status": ["ok"] * n, "run_id": ["run-1"] * n,
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)})
    write_part(table.replace_schema_metadata({b"vidx.model": json.dumps(MODEL).encode()}),
               str(directory / "videos"), "key")
    return str(directory)


def test_a_failed_check_after_a_load_is_exit_1_and_serves_nothing(tmp_path, capsys, monkeypatch):
    """A check of vidx's own that fails is not the user's doing: exit 1, one line."""
    output, db = embeddings(tmp_path / "index"), str(tmp_path / "vidx.db")
    monkeypatch.setattr(VectorStore, "count", lambda self, name, filter="": 7)  # the database lost rows
    line = cli_error(capsys, "load", "--embeddings", output, "--db", db, code=1)
    assert line.startswith("validation of videos_") and line.endswith("(night 1): 7 rows, expected 20")
    monkeypatch.undo()
    store = VectorStore(db)
    assert store.alias_target("videos") is None and store.versions("videos") == []


@pytest.fixture(scope="module")
def index_with_an_error(tmp_path_factory, good_videos, local_ray) -> str:
    """Whole videos (segment_seconds null) and an error row (a null `error` was what Milvus 2.3 refused)."""
    from jobs.index import index

    work = tmp_path_factory.mktemp("one_good_one_missing")
    manifest = work / "m.jsonl"
    manifest.write_text(f'{{"uri": "{good_videos["h264"]}", "captions": ["a clip"]}}\n'
                        f'{{"uri": "{work / "missing.mp4"}"}}\n')
    index(str(manifest), str(work / "out"), model="tiny")
    return str(work / "out")


def test_an_index_run_with_failed_videos_loads_into_each_engine(index_with_an_error, db):
    result = load(index_with_an_error, db)
    assert result["videos"]["rows"] == 1 and result["captions"]["rows"] == 1
    assert VectorStore(db).model_record("videos")["spec"]["name"] == "tiny"


def test_a_column_the_server_cannot_store_is_one_line_and_exit_2(tmp_path, server_db, capsys):
    vectors = np.eye(3, 8, dtype=np.float32)
    table = pa.table({"key": ["a#0", "b#0", "c#0"], "video_id": ["a", "b", "c"], "status": ["ok"] * 3,
                      "run_id": ["r"] * 3, "channel": ["news", None, "sport"],
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 8)})
    write_part(table.replace_schema_metadata({b"vidx.model": b'{"fingerprint": "f"}'}), str(tmp_path / "videos"), "key")
    line = cli_error(capsys, "load", "--embeddings", str(tmp_path), "--db", server_db)
    assert line.startswith("column 'channel' is empty (null) in 1 of")
    assert "Milvus 2.3.5 has no nullable fields" in line


def test_a_corpus_mismatching_the_videos_model_is_refused_at_load(index_copy, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(index_copy / "videos", other / "videos")
    (tmp_path / "demo.txt").write_text("a red circle\n")
    texts(str(tmp_path / "demo.txt"), str(tmp_path / "solo"), model="demo")  # no videos there: any model
    shutil.copytree(tmp_path / "solo" / "texts" / "demo", other / "texts" / "demo")
    line = cli_error(capsys, "load", "--embeddings", str(other), "--db", str(tmp_path / "vidx.db"))
    assert "corpus 'demo' is encoded by model" in line
    assert not (tmp_path / "vidx.db").exists()  # refused before anything was built


def write_videos(index: Path, vectors: dict[str, np.ndarray]) -> None:
    """One index run's part: a row per whole video (video_id -> its vector)."""
    n, run_id = len(vectors), new_run_id()
    table = pa.table({"key": [f"{v}#0" for v in vectors], "video_id": list(vectors), "status": ["ok"] * n,
                      "run_id": [run_id] * n, "embedding": pa.FixedSizeListArray.from_arrays(
                          pa.array(np.stack(list(vectors.values())).reshape(-1)), GROUPED_DIM)})
    write_part(table.replace_schema_metadata({b"vidx.model": json.dumps(MODEL).encode()}), str(index / "videos"), "key")


GROUPED_DIM = 32
GROUPS_SQL = "SELECT duplicate_group, count(*) AS n FROM videos GROUP BY 1 HAVING count(*) > 1 ORDER BY n DESC"


def copy_of(vector: np.ndarray, seed: int) -> np.ndarray:
    noisy = vector + 0.01 * np.random.default_rng(seed).standard_normal(GROUPED_DIM)
    return (noisy / np.linalg.norm(noisy)).astype(np.float32)


def test_duplicate_groups_are_a_column_and_a_night_serves_a_changed_group(tmp_path, local_ray, db):
    rng = np.random.default_rng(5)
    vectors = {f"v{i:02d}": v / np.linalg.norm(v) for i, v in enumerate(rng.standard_normal((12, GROUPED_DIM)))}
    vectors.update(v01=copy_of(vectors["v00"], 1), v02=copy_of(vectors["v00"], 2), v06=copy_of(vectors["v05"], 3))
    index = tmp_path / "index"
    write_videos(index, {v: x.astype(np.float32) for v, x in vectors.items()})
    duplicates(str(index), threshold=0.95, method="exact")
    load(str(index), db)
    assert run_query(db, GROUPS_SQL) == [{"duplicate_group": "v00", "n": 3}, {"duplicate_group": "v05", "n": 2}]
    assert sorted(r["video_id"] for r in run_query(db, "SELECT video_id FROM videos WHERE duplicate_group = 'v05'")) \
        == ["v05", "v06"]
    assert run_query(db, "SELECT duplicate_group FROM videos WHERE video_id = 'v09'") == [{"duplicate_group": "v09"}]

    write_videos(index, {"a08": copy_of(vectors["v08"], 4)})  # tonight: a copy of an old video, named before it
    assert duplicates(str(index), threshold=0.95, method="exact")["videos_compared"] == 1
    night = load(str(index), db)["videos"]
    assert (night["night"], night["added"], night["superseded"]) == (2, 2, 1)  # a08, and v08 in its new group
    assert sorted(r["video_id"] for r in run_query(db, "SELECT video_id FROM videos WHERE duplicate_group = 'a08'")) \
        == ["a08", "v08"]
    groups = run_query(db, GROUPS_SQL)
    assert groups[0] == {"duplicate_group": "v00", "n": 3}
    assert sorted(g["duplicate_group"] for g in groups[1:]) == ["a08", "v05"]


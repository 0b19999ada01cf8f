"""A collection that follows its index night after night, on both engines: a night writes what
changed and serves what a full build would, readers see one night or the other, an interrupted
night is redone to the same rows, the night before is one step away, and what neither night
serves is deleted."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from embeddings import DIM, MODEL, embeddings_table, write
from errors import IntegrityError, UserError
from storage.milvus import lite_partitions, night_publish, stored_rows
from storage.milvus.exact_copy import ExactCopy, exact_copy_path, superseded_path
from storage.milvus.night_publish import roll_back
from storage.milvus.nights import visible
from storage.milvus.served_ledger import ServedLedger
from storage.milvus.store import VectorStore
from storage.milvus.versions import serve_rows
from storage.query.engine import Engine
from storage.query.questions import Search
from storage.schema import NIGHT_TO
from storage.table.live_rows import scan_live

GROUPED = "SELECT run_id, count(*) AS n FROM videos GROUP BY run_id ORDER BY run_id"


@pytest.fixture
def store(db) -> VectorStore:
    with VectorStore(db) as store:
        yield store


def serve(store: VectorStore, directory, alias: str = "videos", full: bool = False, version: str = "v1") -> dict:
    """Serve the rows of `directory` (tmp_path/NAME/videos): a test's nights are of one index, whose
    root (tmp_path) keeps a server's record of the versions served (served_ledger.py)."""
    return serve_rows(store, scan_live(str(directory), status="ok"), alias, version, full,
                      index_root=str(Path(directory).parents[1]))


def library(tmp_path, name: str, *tables: pa.Table):
    return write(tmp_path / name / "videos", *tables)


def tonight_tables() -> tuple[pa.Table, ...]:
    """Last night's 100 videos (run-1); tonight v0-v9 are re-encoded (run-2), v90-v99 are gone,
    v100-v109 are new."""
    before = embeddings_table(100)
    changed = embeddings_table(10, seed=5, run_id="run-2")
    kept = before.slice(10, 80)
    added = embeddings_table(110, seed=6, run_id="run-2").slice(100)
    return before, changed, kept, added


def answers(engine: Engine, alias: str) -> tuple[list, list]:
    """What a reader sees of the videos served as `alias`: every row's key and run, and the neighbours
    (keys and scores) of a few videos."""
    rows = engine.query(f"SELECT key, run_id FROM {alias} ORDER BY key").to_pylist()
    neighbours = [[(hit["key"], round(hit["score"], 5)) for hit in engine.search(Search(video_id=video, k=5), alias)]
                  for video in ("v3", "v42", "v55")]
    return rows, neighbours


def test_a_night_writes_the_change_and_serves_what_a_full_build_would(store, tmp_path):
    before, changed, kept, added = tonight_tables()
    serve(store, library(tmp_path, "last", before))
    tonight = library(tmp_path, "tonight", changed, kept, added)
    night = serve(store, tonight)
    assert (night["built"], night["night"], night["added"], night["superseded"]) == (False, 2, 20, 20)
    assert store.alias_target("videos") == "videos_v1" and store.versions("videos") == ["videos_v1"]
    serve(store, tonight, alias="rebuilt", full=True)
    engine = Engine(store)
    assert answers(engine, "videos") == answers(engine, "rebuilt")
    rows = {row["key"]: row["run_id"] for row in answers(engine, "videos")[0]}
    assert "v95#0" not in rows and rows["v3#0"] == "run-2" and rows["v105#0"] == "run-2" and len(rows) == 100
    hit = engine.search(Search(video_id="v3", k=1), "videos")[0]  # v3's new vector finds v3 itself
    assert hit["key"] == "v3#0" and hit["run_id"] == "run-2" and hit["score"] == pytest.approx(1.0, abs=1e-5)


def test_milvus_lite_fills_partitions_in_turn_and_a_night_supersedes_rows_in_earlier_ones(store, tmp_path,
                                                                                           monkeypatch):
    """milvus-lite merges data files within a partition: a load fills partitions of bounded size one
    after another, and a night's row versions go to the one being filled, whichever partitions hold
    the versions they supersede, and serve what a full build would."""
    monkeypatch.setattr(stored_rows, "INSERT_BYTES", 20 * DIM * 4)  # requests of 20 rows
    monkeypatch.setattr(lite_partitions, "PARTITION_BYTES", 60 * DIM * 4)  # partitions of 60
    before, changed, kept, added = tonight_tables()
    serve(store, library(tmp_path, "last", before))
    first = store.client.list_partitions(store.resolve("videos"))
    tonight = library(tmp_path, "tonight", changed, kept, added)
    assert serve(store, tonight)["superseded"] == 20
    serve(store, tonight, alias="rebuilt", full=True)
    engine = Engine(store)
    assert answers(engine, "videos") == answers(engine, "rebuilt")
    if store.is_lite:  # a server sizes its own segments
        name = store.resolve("videos")
        assert first == ["_default", "rows_00000", "rows_00001"]  # 100 rows: 60, then 40
        assert store.client.list_partitions(name) == [*first, "rows_00002"]  # 20 beside the 40, 20 after
        assert store.client.get_partition_stats(name, "_default")["row_count"] == 0


def test_the_night_before_is_one_step_back_and_older_rows_are_deleted(store, tmp_path):
    before, changed, kept, added = tonight_tables()
    serve(store, library(tmp_path, "n1", before))
    engine = Engine(store)
    first = answers(engine, "videos")
    serve(store, library(tmp_path, "n2", changed, kept, added))
    second = answers(engine, "videos")
    assert roll_back(store, "videos")["night"] == 1
    assert answers(engine, "videos") == first
    with pytest.raises(UserError, match="no earlier night is kept to roll back to"):
        roll_back(store, "videos")
    serve(store, library(tmp_path, "n2", changed, kept, added))  # night 2 again, from what night 2 left
    assert answers(engine, "videos") == second
    third = serve(store, library(tmp_path, "n3", changed, kept))  # the added videos go again
    added_keys = set(added["key"].to_pylist())
    assert third["night"] == 3 and answers(engine, "videos")[0] == [r for r in second[0] if r["key"] not in added_keys]
    # Retention: what night 1 served and night 2 superseded is deleted; what night 3 superseded stays (rollback).
    name = store.resolve("videos")
    assert store.count(name, f"{NIGHT_TO} <= 2") == 0 and store.count(name, f"{NIGHT_TO} == 3") == 10
    assert store.count(name) == 90 + 10


def test_a_night_killed_before_it_was_published_serves_the_night_before_then_is_redone(store, tmp_path, monkeypatch):
    before, changed, kept, added = tonight_tables()
    serve(store, library(tmp_path, "last", before))
    engine = Engine(store)
    served = answers(engine, "videos")

    def killed(*_, **__):
        raise IntegrityError("killed")
    monkeypatch.setattr(night_publish, "validate", killed)  # every write made, nothing published
    with pytest.raises(IntegrityError, match="killed"):
        serve(store, library(tmp_path, "first try", changed, kept, added))
    assert answers(engine, "videos") == served
    monkeypatch.undo()
    # The next night differs from the interrupted one: v90-v99 stay after all, v100-v104 are not added.
    retry = library(tmp_path, "retry", changed, before.slice(10), added.slice(5))
    assert serve(store, retry)["night"] == 2
    serve(store, retry, alias="rebuilt", full=True)
    assert answers(engine, "videos") == answers(engine, "rebuilt")
    assert store.count(store.resolve("videos")) == 105 + 10  # and the retry's stale rows are gone


def test_readers_see_the_night_before_or_the_whole_night(store, tmp_path):
    before, changed, kept, added = tonight_tables()
    serve(store, library(tmp_path, "last", before))
    reader, seen, done = Engine(VectorStore(store.uri)), [], threading.Event()  # another client, as a server's
    old = reader.query(GROUPED).to_pylist()

    def poll():
        while not done.is_set():
            seen.append(reader.query(GROUPED).to_pylist())
    thread = threading.Thread(target=poll)
    thread.start()
    try:
        serve(store, library(tmp_path, "tonight", changed, kept, added))
    finally:
        done.set()
        thread.join()
    new = reader.query(GROUPED).to_pylist()
    assert new == [{"run_id": "run-1", "n": 80}, {"run_id": "run-2", "n": 20}]
    assert seen and all(answer in (old, new) for answer in seen)


def test_another_model_or_new_columns_build_a_new_version(store, tmp_path):
    table = embeddings_table(30)
    serve(store, library(tmp_path, "a", table))
    other_model = embeddings_table(30, model={**MODEL, "fingerprint": "b"}, run_id="run-2")
    assert serve(store, library(tmp_path, "b", other_model), version="v2")["built"]
    with_column = other_model.append_column("channel", pa.array(["c1"] * 30)).replace_schema_metadata(
        other_model.schema.metadata)
    assert serve(store, library(tmp_path, "c", with_column), version="v3")["collection"] == "videos_v3"
    assert "channel" in store.fields("videos")


def test_the_exact_copy_serves_any_kept_night_and_refuses_a_missing_file(tmp_path):
    db = str(tmp_path / "vidx.db")
    before, changed, kept, added = tonight_tables()
    with VectorStore(db) as store:
        serve(store, library(tmp_path, "n1", before))
        serve(store, library(tmp_path, "n2", changed, kept, added))
        path = exact_copy_path(db, store.resolve("videos"))
    first, second = ExactCopy(path, 1), ExactCopy(path, 2)
    assert first.count() == 100 and sorted(first.rows["key"].to_pylist()) == sorted(before["key"].to_pylist())
    assert second.count() == 100 and set(second.rows["key"].to_pylist()) >= {"v105#0", "v3#0"}
    np.testing.assert_array_equal(second.matrix[second.rows["key"].to_pylist().index("v3#0")],
                                  changed["embedding"][3].values.to_numpy())
    superseded_path(path, 2).unlink()
    with pytest.raises(IntegrityError, match=r"superseded.arrow: a file of the exact copy of night 2 is missing"):
        ExactCopy(path, 2)


def scanned_filters(store: VectorStore, monkeypatch) -> list[str]:
    """The filters of every scan `store` makes from now on."""
    filters, scan = [], store.scan
    monkeypatch.setattr(store, "scan", lambda name, filter, *args, **kwargs: filters.append(filter) or scan(
        name, filter, *args, **kwargs))
    return filters


def test_a_night_on_a_server_reads_the_served_versions_recorded_beside_the_index(server_db, tmp_path, monkeypatch):
    before, changed, kept, added = tonight_tables()
    with VectorStore(server_db) as store:
        serve(store, library(tmp_path, "last", before))
        assert [path.name for path in (tmp_path / "served").iterdir()] == [ServedLedger(
            str(tmp_path), server_db, "videos").name]
        filters = scanned_filters(store, monkeypatch)
        serve(store, library(tmp_path, "tonight", changed, kept, added))
        assert visible(1) not in filters  # the 100 served versions were not read back
        serve(store, library(tmp_path, "tonight", changed, kept, added), alias="rebuilt", full=True)
        engine = Engine(store)
        assert answers(engine, "videos") == answers(engine, "rebuilt")


def test_a_record_of_another_night_is_not_trusted(server_db, tmp_path, monkeypatch):
    """A record the last load did not write (an index loaded elsewhere since, a rollback) is passed
    over: the night reads the served versions back from the collection."""
    before, changed, kept, added = tonight_tables()
    record = tmp_path / "served" / ServedLedger(str(tmp_path), server_db, "videos").name
    with VectorStore(server_db) as store:
        serve(store, library(tmp_path, "n1", before))
        first_record = record.read_bytes()  # night 1's: 100 versions, 10 of them gone since
        serve(store, library(tmp_path, "n2", changed, kept, added))
        record.write_bytes(first_record)
        filters = scanned_filters(store, monkeypatch)
        serve(store, library(tmp_path, "n3", changed, kept))
        assert visible(2) in filters
        serve(store, library(tmp_path, "n3", changed, kept), alias="rebuilt", full=True)
        engine = Engine(store)
        assert answers(engine, "videos") == answers(engine, "rebuilt")
        assert roll_back(store, "videos")["night"] == 2
        serve(store, library(tmp_path, "n3", changed, kept))  # the digest went with the rollback
        assert filters.count(visible(2)) == 2 and answers(engine, "videos") == answers(engine, "rebuilt")

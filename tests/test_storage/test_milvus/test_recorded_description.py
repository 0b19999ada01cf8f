"""An embedded collection is described from the record vidx keeps beside its exact copy, as
milvus-lite would describe it, without milvus-lite reading its rows; without a record, milvus-lite
describes it."""

from __future__ import annotations

from embeddings import embeddings_table, write
from storage.milvus.exact_copy import exact_copy_path
from storage.milvus.night_publish import roll_back
from storage.milvus.recorded_description import description_path
from storage.milvus.store import VectorStore
from storage.milvus.versions import serve_rows
from storage.query.engine import Engine
from storage.schema import NIGHT_KEY
from storage.table.live_rows import scan_live

COUNT = "SELECT count(*) AS n FROM videos"


def serve(store: VectorStore, directory) -> dict:
    return serve_rows(store, scan_live(str(directory), status="ok"), "videos", "v1")


def unopened(store: VectorStore, monkeypatch) -> None:
    """From now on, milvus-lite refuses to open a collection (to describe it, or to say it has it:
    pymilvus asks that by describing it)."""
    def refused(*_, **__):
        raise AssertionError("milvus-lite was asked to open a collection")
    monkeypatch.setattr(store.client, "describe_collection", refused)
    monkeypatch.setattr(store.client, "has_collection", refused)


def test_a_fresh_process_answers_without_milvus_lite_opening_the_collection(tmp_path, monkeypatch):
    db = str(tmp_path / "vidx.db")
    with VectorStore(db) as store:
        serve(store, write(tmp_path / "n1" / "videos", embeddings_table(40)))
    with VectorStore(db, create=False) as store:
        described = store.client.describe_collection("videos")
        assert store.describe("captions") is None
    with VectorStore(db, create=False) as store:
        unopened(store, monkeypatch)
        assert store.describe("videos") == described
        assert store.describe(described["collection_name"]) == described
        assert Engine(store).query(COUNT).to_pylist() == [{"n": 40}]


def test_each_property_write_is_recorded_and_a_dropped_collection_leaves_no_record(tmp_path, monkeypatch):
    db = str(tmp_path / "vidx.db")
    with VectorStore(db) as store:
        serve(store, write(tmp_path / "n1" / "videos", embeddings_table(40)))
        serve(store, write(tmp_path / "n2" / "videos", embeddings_table(50)))  # night 2: ten more
        name = store.resolve("videos")
    with VectorStore(db, create=False) as store:
        unopened(store, monkeypatch)
        assert store.properties("videos")[NIGHT_KEY] == "2"
        assert Engine(store).query(COUNT).to_pylist() == [{"n": 50}]
        monkeypatch.undo()
        roll_back(store, "videos")
        unopened(store, monkeypatch)
        assert store.properties("videos")[NIGHT_KEY] == "1"
        assert Engine(store).query(COUNT).to_pylist() == [{"n": 40}]
        monkeypatch.undo()
        store.drop(name)
    assert not description_path(exact_copy_path(db, name)).exists()


def test_without_a_record_milvus_lite_describes_the_collection(tmp_path):
    db = str(tmp_path / "vidx.db")
    with VectorStore(db) as store:
        serve(store, write(tmp_path / "n1" / "videos", embeddings_table(40)))
        name = store.resolve("videos")
    description_path(exact_copy_path(db, name)).unlink()  # as an earlier vidx left it
    with VectorStore(db, create=False) as store:
        assert store.describe("videos")["collection_name"] == name
        assert Engine(store).query(COUNT).to_pylist() == [{"n": 40}]


def test_the_record_says_what_milvus_lite_says_after_a_night(tmp_path):
    db = str(tmp_path / "vidx.db")
    with VectorStore(db) as store:
        serve(store, write(tmp_path / "n1" / "videos", embeddings_table(40)))
        serve(store, write(tmp_path / "n2" / "videos", embeddings_table(50)))
        assert store.describe("videos") == store.client.describe_collection("videos")

"""Versioned collections on both engines (milvus-lite and a Milvus server): build whole, validate,
swap, retire, exact answers, and the places where the two engines differ. A night of a collection
(what a load does when it can follow the index): test_nights.py."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from embeddings import DIM, MODEL, embeddings_table, write
from errors import IntegrityError
from storage.table.live_rows import scan_live
from storage.milvus.filters import equals
from storage.milvus.exact_copy import ExactCopy, ExactCopyWriter, exact_copy_path
from storage.milvus.store import VectorStore, VectorStoreError
from storage.milvus.stored_rows import inserted_batches, served_fields
from storage.milvus.versions import retire_versions, serve_rows
from storage.schema import EMBEDDING


def load(store: VectorStore, directory: str, version: str, full: bool = True) -> dict:
    return serve_rows(store, scan_live(directory, status="ok"), "videos", version, full)


@pytest.fixture
def store(db) -> VectorStore:
    return VectorStore(db)


def test_load_builds_a_version_then_swaps_the_alias(store, tmp_path):
    parts = write(tmp_path / "videos", embeddings_table(300))
    first = load(store, parts, "v1")
    second = load(store, parts, "v2")
    assert first["previous"] is None and second["previous"] == "videos_v1"
    assert store.alias_target("videos") == "videos_v2"
    assert store.count("videos") == 300  # loading twice gives the same collection, not twice the rows
    assert VectorStore(store.uri).model_record("videos") == MODEL  # properties read back through the alias
    assert "status" not in store.fields("videos") and "error" not in store.fields("videos")


def test_milvus_lite_writes_on_into_its_last_partition_even_an_empty_one(tmp_path):
    """A process killed between creating a partition and writing to it leaves it empty: the next
    process writes into it rather than creating it again."""
    table = embeddings_table(10).drop_columns(["status", "error", "segment_seconds"])
    with VectorStore(str(tmp_path / "vidx.db")) as store:
        store.create_collection("videos_x", "key", served_fields(table.schema, "key"), DIM, {})
        store.client.create_partition("videos_x", "rows_00000")
    with VectorStore(str(tmp_path / "vidx.db"), create=False) as store:
        store.insert("videos_x", table)
        assert store.client.list_partitions("videos_x") == ["_default", "rows_00000"]
        assert store.client.get_partition_stats("videos_x", "rows_00000")["row_count"] == 10


def test_inserts_in_flight_are_all_acknowledged_and_a_failed_one_stops_the_load(store, monkeypatch):
    table = embeddings_table(40).drop_columns(["status", "error", "segment_seconds"])
    store.create_collection("videos_x", "key", served_fields(table.schema, "key"), DIM, {})
    batches = [table.slice(start, 10) for start in range(0, 40, 10)]
    acknowledged = [batch["key"][0].as_py() for batch in inserted_batches(store.insert, "videos_x", batches, 2)]
    assert acknowledged == ["v0#0", "v10#0", "v20#0", "v30#0"]
    store.seal("videos_x")  # a server counts only a loaded collection, which needs its index
    assert store.count("videos_x") == 40
    insert = store.insert

    def refuse_the_third(name, rows):
        if rows["key"][0].as_py() == "v20#0":
            raise VectorStoreError("refused")
        insert(name, rows)

    monkeypatch.setattr(store, "insert", refuse_the_third)
    with pytest.raises(VectorStoreError, match="refused"):
        list(inserted_batches(store.insert, "videos_x", batches, 2))


def test_failed_validation_leaves_the_alias_where_it_was(store, tmp_path, monkeypatch):
    parts = write(tmp_path / "videos", embeddings_table(50))
    load(store, parts, "v1")
    monkeypatch.setattr(VectorStore, "count", lambda self, name, filter="": 7)
    with pytest.raises(IntegrityError, match="7 rows, expected 50"):
        load(store, parts, "v2")
    assert store.alias_target("videos") == "videos_v1"
    assert store.versions("videos") == ["videos_v1"]


def test_a_vector_stored_other_than_written_fails_validation(store, tmp_path, monkeypatch):
    """The sampled rows are read back by primary key and compared with what was written."""
    parts = write(tmp_path / "videos", embeddings_table(50))
    insert = VectorStore.insert

    def insert_negated(self, name, rows):
        negated = pa.FixedSizeListArray.from_arrays(pc.negate(rows[EMBEDDING].combine_chunks().flatten()), DIM)
        insert(self, name, rows.set_column(rows.schema.get_field_index(EMBEDDING), EMBEDDING, negated))
    monkeypatch.setattr(VectorStore, "insert", insert_negated)
    with pytest.raises(IntegrityError, match=r"validation of videos_v1 \(night 1\): row version '.*' does not read back"):
        load(store, parts, "v1")
    assert store.alias_target("videos") is None and store.versions("videos") == []


def test_an_unchanged_table_loads_nothing_a_changed_one_a_night_and_full_a_new_version(store, tmp_path):
    parts = write(tmp_path / "videos", embeddings_table(40))
    load(store, parts, "v1")
    again = load(store, parts, "v2", full=False)
    assert again["unchanged"] and again["collection"] == "videos_v1" and store.versions("videos") == ["videos_v1"]
    write(tmp_path / "videos", embeddings_table(40, run_id="run-2"))  # the same videos, written again
    night = load(store, parts, "v3", full=False)
    assert (night["collection"], night["night"], night["added"], night["superseded"]) == ("videos_v1", 2, 40, 40)
    assert store.alias_target("videos") == "videos_v1" and store.versions("videos") == ["videos_v1"]
    rebuilt = load(store, parts, "v4")
    assert rebuilt["built"] and store.alias_target("videos") == "videos_v4"


def test_retention_keeps_the_served_versions_and_drops_what_was_never_served(store, tmp_path):
    parts = write(tmp_path / "videos", embeddings_table(10))
    for version in ("v1", "v2", "v3"):
        load(store, parts, version)
    store.create_collection("videos_v4", "key", [], DIM, {})  # a load killed before its swap
    assert retire_versions(store, "videos", keep=2) == ["videos_v1", "videos_v4"]
    assert store.versions("videos") == ["videos_v2", "videos_v3"] and store.alias_target("videos") == "videos_v3"
    assert retire_versions(store, "videos", keep=1) == ["videos_v2"]
    if store.embedded:  # the exact-search copies and recorded descriptions go with their versions
        kept = sorted(p.name for p in exact_copy_path(store.uri, "x").parent.iterdir())
        assert kept == ["videos_v3.arrow", "videos_v3.description.json", "videos_v3.f32"]


def test_search_equals_brute_force_top_k(store, tmp_path):
    table = embeddings_table(3000, seed=1)
    load(store, write(tmp_path / "videos", table), "v1")
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    keys = np.asarray(table["key"].to_pylist())
    searcher = VectorStore(store.uri)  # another client, as a query process would open it
    rng = np.random.default_rng(2)
    for _ in range(5):
        query = rng.standard_normal(DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        exact = np.argsort(-(vectors @ query), kind="stable")[:10]
        hits = searcher.search("videos", query, k=10, output_fields=["key"], ef=512)
        assert [h["key"] for h in hits] == keys[exact].tolist()
        np.testing.assert_allclose([h["score"] for h in hits], (vectors @ query)[exact], atol=1e-4)


def test_a_part_whose_rows_were_all_superseded_serves_none_of_them(store, tmp_path):
    superseded, newer = embeddings_table(40, seed=4), embeddings_table(40, seed=5, run_id="run-2")
    others = embeddings_table(80, seed=6).slice(40)
    load(store, write(tmp_path / "videos", superseded, newer, others), "v1")
    live = pa.concat_tables([newer, others])
    vectors = np.stack(live["embedding"].to_numpy(zero_copy_only=False))
    query = vectors[3] + 0.5 * vectors[50]
    hits = VectorStore(store.uri).search("videos", query, k=5, output_fields=["key"], ef=512)
    assert [h["key"] for h in hits] == np.asarray(live["key"])[np.argsort(-(vectors @ query))[:5]].tolist()


def test_the_exact_copy_holds_batches_of_any_size_as_one_matrix(tmp_path):
    """A load writes batch after batch, among them the empty batch of a part with no live row."""
    table = embeddings_table(6)
    writer = ExactCopyWriter(tmp_path / "videos.arrow")
    [batch] = table.to_batches()
    writer.write(pa.Table.from_batches([batch.slice(0, 0), batch.slice(0, 4)]))
    writer.write(pa.Table.from_batches([batch.slice(4)]))
    writer.close()
    copy = ExactCopy(tmp_path / "videos.arrow")
    np.testing.assert_array_equal(copy.matrix, np.stack(table["embedding"].to_numpy(zero_copy_only=False)))
    hits = copy.top_k(table["embedding"][5].values.to_numpy(), 2, columns=["key", "genre"]).to_pylist()
    assert [(h["key"], h["genre"]) for h in hits][0] == ("v5#0", table["genre"][5].as_py())


def test_a_swap_made_by_one_client_is_seen_by_another_at_once(store, tmp_path):
    """Embedded milvus-lite remembers alias targets for the process: every client in it must see a swap."""
    first, second = embeddings_table(20, seed=7), embeddings_table(20, seed=8, run_id="run-2")
    load(store, write(tmp_path / "a", first), "v1")
    reader = VectorStore(store.uri)
    query = second["embedding"][3].values.to_numpy()
    assert reader.resolve("videos") == "videos_v1"
    reader.search("videos", query, 1, output_fields=["key"])
    load(VectorStore(store.uri), write(tmp_path / "b", second), "v2")
    assert reader.resolve("videos") == "videos_v2"
    hit = reader.search("videos", query, 1, output_fields=["run_id"])[0]
    assert hit["run_id"] == "run-2" and hit["score"] == pytest.approx(1.0, abs=1e-5)


def test_filtered_search_returns_only_matching_rows(store, tmp_path):
    load(store, write(tmp_path / "videos", embeddings_table(500, seed=3)), "v1")
    hits = store.search("videos", np.ones(DIM, np.float32) / 4, k=50, filter='genre == "news" and duration_s > 30',
                        output_fields=["key", "genre", "duration_s"])
    assert hits and all(h["genre"] == "news" and h["duration_s"] > 30 for h in hits)


def test_any_string_is_matched_as_itself_by_a_filter(store, tmp_path):
    """Quotes, backslashes, control characters and non-ASCII text: each genre finds exactly its rows."""
    genres = ('say "hi"', "back\\slash", "tab\there", "new\nline", "record\x1eseparator", "Ø", 'x" or genre != "')
    table = embeddings_table(70, seed=5, genres=genres)
    load(store, write(tmp_path / "videos", table), "v1")
    for genre in genres:
        rows = store.query(store.resolve("videos"), filter=equals("genre", genre), output_fields=["key"], limit=100)
        expected = [key for key, row_genre in zip(table["key"].to_pylist(), table["genre"].to_pylist()) if row_genre == genre]
        assert sorted(row["key"] for row in rows) == sorted(expected), genre


def test_a_key_written_twice_is_served_once_on_both_engines(store, tmp_path):
    """A crash between writing a compacted part and deleting its original leaves a key in two parts.
    milvus-lite would overwrite the second insert; a server keeps both: vidx inserts each key once."""
    table = embeddings_table(30)
    parts = write(tmp_path / "videos", table, table.slice(0, 10).replace_schema_metadata(table.schema.metadata))
    assert len(list((tmp_path / "videos").glob("part-*"))) == 2
    load(store, parts, "v1")
    assert store.count("videos") == 30
    rows = store.query(store.resolve("videos"), filter="", output_fields=["key"], limit=100)
    assert sorted(r["key"] for r in rows) == sorted(table["key"].to_pylist())


def test_the_engines_differ_on_a_repeated_key(store, tmp_path):
    """Why the de-duplication matters: the same key inserted twice, straight into each engine."""
    table = embeddings_table(5)
    load(store, write(tmp_path / "videos", table), "v1")
    name = store.resolve("videos")
    store.client.insert(name, store.query(name, filter='key == "v0#0"', output_fields=["*"]))
    assert store.count(name) == (5 if store.is_lite else 6)


def test_nulls_are_stored_where_the_engine_can_or_refused_with_the_rule(store, tmp_path):
    parts = write(tmp_path / "videos", embeddings_table(20, genres=("news", None)))
    if store.nullable:
        load(store, parts, "v1")
        hits = store.query(store.resolve("videos"), filter="genre is null", output_fields=["key", "genre"], limit=100)
        assert hits and all(h["genre"] is None for h in hits)
    else:  # Milvus 2.3.5, the oldest server tested
        with pytest.raises(VectorStoreError, match=r"column 'genre' is empty \(null\) in \d+ of the 20 rows to serve.*"
                                                   r"Milvus 2\.3\.5 has no nullable fields"):
            load(store, parts, "v1")
        assert store.versions("videos") == []  # nothing half-built is left


def test_milvus_lite_opens_again_after_its_connection_sat_idle(tmp_path):
    """Processes that load, wait, then search (tests, notebooks, `vidx serve`) reuse one connection."""
    store = VectorStore(str(tmp_path / "vidx.db"))
    load(store, write(tmp_path / "videos", embeddings_table(20)), "v1")
    time.sleep(40)  # milvus-lite's gRPC server dropped pymilvus' default keepalive after ~30 s
    assert VectorStore(store.uri).count("videos") == 20


def test_a_database_held_by_another_process_is_refused_with_the_way_out(tmp_path):
    db = str(tmp_path / "vidx.db")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from storage.milvus.store import VectorStore; "
                               f"VectorStore({db!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[3])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(VectorStoreError, match="another process holds the lock.*milvus-lite server --data-dir"):
            VectorStore(db)
    finally:
        holder.kill()

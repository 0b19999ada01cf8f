"""Loading Parquet embeddings into milvus-lite: versions, validation, alias swap, exact answers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs.load import load, load_collection
from storage.vectorstore import VectorStore, VectorStoreError

DIM = 16


def embeddings_table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return pa.table({
        "key": [f"v{i}#0" for i in range(n)],
        "video_id": [f"v{i}" for i in range(n)],
        "duration_s": rng.uniform(1, 60, n),
        "tag": rng.choice(["news", "sport", None], n).tolist(),
        "run_id": ["run-1"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
    })


@pytest.fixture
def store(tmp_path) -> VectorStore:
    return VectorStore(str(tmp_path / "vidx.db"))


def test_load_builds_a_version_then_swaps_the_alias(store):
    table = embeddings_table(300)
    first = load_collection(store, table, "videos", "key", {"fingerprint": "a"}, "v1")
    second = load_collection(store, table, "videos", "key", {"fingerprint": "a"}, "v2")
    assert first["previous"] is None and second["previous"] == "videos_v1"
    assert store.alias_target("videos") == "videos_v2"
    assert store.count("videos") == 300  # loading twice gives the same collection, not twice the rows
    assert store.model_record("videos") == {"fingerprint": "a"}


def test_failed_validation_leaves_the_alias_where_it_was(store, monkeypatch):
    load_collection(store, embeddings_table(50), "videos", "key", {}, "v1")
    monkeypatch.setattr(VectorStore, "count", lambda self, name: 7)
    with pytest.raises(VectorStoreError, match="7 rows, expected 50"):
        load_collection(store, embeddings_table(50), "videos", "key", {}, "v2")
    assert store.alias_target("videos") == "videos_v1"
    assert store.versions("videos") == ["videos_v1"]


def test_an_unchanged_table_loads_nothing_and_a_changed_one_a_new_version(store):
    table = embeddings_table(40)
    load_collection(store, table, "videos", "key", {}, "v1", skip_unchanged=True)
    again = load_collection(store, table, "videos", "key", {}, "v2", skip_unchanged=True)
    assert again["unchanged"] and again["collection"] == "videos_v1" and store.versions("videos") == ["videos_v1"]
    rewritten = table.set_column(table.schema.get_field_index("run_id"), "run_id", pa.array(["run-2"] * 40))
    load_collection(store, rewritten, "videos", "key", {}, "v3", skip_unchanged=True)
    assert store.alias_target("videos") == "videos_v3"


def test_retention_keeps_the_served_versions_and_drops_what_was_never_served(store):
    for version in ("v1", "v2", "v3"):
        load_collection(store, embeddings_table(10), "videos", "key", {}, version)
    store.build_version("videos_v4", embeddings_table(10), "key", {})  # a load killed before its swap
    assert store.retire_versions("videos", keep=2) == ["videos_v1", "videos_v4"]
    assert store.versions("videos") == ["videos_v2", "videos_v3"] and store.alias_target("videos") == "videos_v3"
    assert store.retire_versions("videos", keep=1) == ["videos_v2"]


def test_search_equals_brute_force_top_k(store):
    table = embeddings_table(3000, seed=1)
    load_collection(store, table, "videos", "key", {}, "v1")
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    keys = np.asarray(table["key"].to_pylist())
    rng = np.random.default_rng(2)
    for _ in range(5):
        query = rng.standard_normal(DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        exact = np.argsort(-(vectors @ query), kind="stable")[:10]
        hits = store.search("videos", query, k=10, output_fields=["key"], ef=512)
        assert [h["key"] for h in hits] == keys[exact].tolist()
        np.testing.assert_allclose([h["score"] for h in hits], (vectors @ query)[exact], atol=1e-4)


def test_filtered_search_returns_only_matching_rows(store):
    table = embeddings_table(500, seed=3)
    load_collection(store, table, "videos", "key", {}, "v1")
    hits = store.search("videos", np.ones(DIM, np.float32) / 4, k=50, filter='tag == "news" and duration_s > 30',
                        output_fields=["key", "tag", "duration_s"])
    assert hits and all(h["tag"] == "news" and h["duration_s"] > 30 for h in hits)


def test_load_job_reads_ok_rows_of_an_index_run(tmp_path, good_videos, local_ray):
    from jobs.index import index

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f'{{"uri": "{good_videos["h264"]}", "captions": ["a clip"]}}\n'
                        f'{{"uri": "{tmp_path / "missing.mp4"}"}}\n')
    index(str(manifest), str(tmp_path / "out"), model="tiny")
    result = load(str(tmp_path / "out"), str(tmp_path / "vidx.db"))
    assert result["videos"]["rows"] == 1 and result["captions"]["rows"] == 1
    store = VectorStore(str(tmp_path / "vidx.db"))
    assert store.model_record("videos")["spec"]["name"] == "tiny"


def test_milvus_lite_opens_again_after_its_connection_sat_idle(store):
    """Processes that load, wait, then search (tests, notebooks, `vidx serve`) reuse one connection."""
    load_collection(store, embeddings_table(20), "videos", "key", {}, "v1")
    time.sleep(40)  # milvus-lite's gRPC server dropped pymilvus' default keepalive after ~30 s
    assert VectorStore(store.uri).count("videos") == 20


def test_a_database_held_by_another_process_is_refused_with_the_way_out(tmp_path):
    db = str(tmp_path / "vidx.db")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from storage.vectorstore import VectorStore; "
                               f"VectorStore({db!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(VectorStoreError, match="another process holds the lock.*milvus-lite server --data-dir"):
            VectorStore(db)
    finally:
        holder.kill()

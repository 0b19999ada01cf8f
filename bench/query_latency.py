"""Load throughput, load memory, query latency and recall of the served index, on either engine.

Usage: python bench/query_latency.py [--rows 100000] [--dim 1024] [--queries 200] [--db URI | --server]

Writes clustered synthetic vectors as an index dataset (Parquet parts of 256 rows, as `vidx index`
writes them), loads it with the real command (`python -m jobs load`, in a child process whose peak
RSS is read from the kernel), then, as a server process would, opens the database afresh and times
the same query vectors three ways in one run: `ann` (vector database search, k=10, resolving the
alias first as a served request does), `ann_filtered` (the same with a scalar filter that keeps
about half the rows) and `exact` (numpy brute force over all vectors in this process), the three
in turn for each query, so the machine's noise falls on all three alike. recall@10 is
|ANN top-10 ∩ exact top-10| / 10, averaged.
`--server` starts a Milvus 2.3.5 standalone server (the `milvus` test package) for the run and
stops it by its process id at the end; `--server-setting` overrides its milvus.yaml (the segment
size, for one: a search visits every segment). On a server the queries run twice: at once after
the load, and again when every loaded segment searches through an index (a server merges segments
by compaction after the load has returned, and indexes the merged ones). Prints one JSON object.

The vectors are clustered (1,000 centres plus noise), as embeddings of a real library are;
uniform random vectors are the worst case for any graph index and no library looks like them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servers import MilvusStandalone, milvus_setting  # noqa: E402
from storage.dataset import write_part  # noqa: E402
from storage.vectorstore import VectorStore  # noqa: E402

K = 10
CENTRES = 1000
ROWS_PER_PART = 256  # as jobs/sink.py writes them
MODEL = {"spec": {"name": "bench"}, "fingerprint": "bench"}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(rows: int, dim: int, rng: np.random.Generator, chunk: int = 50_000) -> np.ndarray:
    centres = unit(rng.standard_normal((CENTRES, dim)))
    vectors = np.empty((rows, dim), np.float32)
    for start in range(0, rows, chunk):  # in chunks: the float64 noise of 1M x 1024 would be 8 GB
        n = min(chunk, rows - start)
        vectors[start:start + n] = unit(centres[rng.integers(0, CENTRES, n)]
                                        + 0.6 / np.sqrt(dim) * rng.standard_normal((n, dim)))
    return vectors


def write_dataset(vectors: np.ndarray, directory: Path) -> None:
    """An index run's videos/ parts: key, video_id, duration_s (for the filter), status, run_id, embedding."""
    n, dim = vectors.shape
    metadata = {b"vidx.model": json.dumps(MODEL).encode()}
    for start in range(0, n, ROWS_PER_PART):
        ids = range(start, min(start + ROWS_PER_PART, n))
        table = pa.table({
            "key": [f"v{i}#0" for i in ids],
            "video_id": [f"v{i}" for i in ids],
            "segment": pa.array([0] * len(ids), pa.int32()),
            "duration_s": np.asarray(ids, np.float64) % 60,
            "status": ["ok"] * len(ids),
            "run_id": ["bench"] * len(ids),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors[ids.start:ids.stop].reshape(-1)), dim),
        }).replace_schema_metadata(metadata)
        write_part(table, str(directory / "videos"), "key")


def load_in_child(embeddings: Path, db: str) -> tuple[dict, float]:
    """`vidx load` as its own process: (its result, its peak RSS in MB). The peak is the child's
    VmHWM, read while it runs: the kernel's ru_maxrss of a spawned child counts the parent's
    memory up to the exec (the 4 GB of vectors this process holds at 1M rows)."""
    child = subprocess.Popen([sys.executable, "-m", "jobs", "load", "--embeddings", str(embeddings), "--db", db,
                              "--collection", "bench"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak_kb = 0
    while child.poll() is None:
        peak_kb = max(peak_kb, _peak_rss_kb(child.pid))
        time.sleep(0.1)
    output = child.stdout.read()
    if child.returncode:
        raise SystemExit(f"vidx load failed (exit {child.returncode})")
    return json.loads(output.strip().splitlines()[-1]), peak_kb / 1024


def _peak_rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it has just ended
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def segments(store: VectorStore, name: str) -> dict | None:
    """A server's loaded segments of `name`: how many, and how many search through their index."""
    if store.is_lite:
        return None
    infos = store.client._get_connection().get_query_segment_info(name)  # no public MilvusClient call
    return {"loaded": len(infos), "indexed": sum(bool(info.index_name) for info in infos),
            "rows": sum(info.num_rows for info in infos)}


def settle(store: VectorStore, name: str, limit_s: float = 900) -> float:
    """Wait until every loaded segment of `name` searches through an index (a server indexes the
    segments its compactions merge after the load has returned); the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        state = segments(store, name)
        if state is None or state["indexed"] == state["loaded"]:
            break
        time.sleep(10)
    return round(time.perf_counter() - started, 1)


def percentiles_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def exact_top_k(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Brute force as a fair baseline does it: one product, a partial sort, then the k sorted."""
    scores = vectors @ query
    top = np.argpartition(-scores, K - 1)[:K]
    return top[np.argsort(-scores[top], kind="stable")]


def timed_in_turn(ways: dict, queries: np.ndarray) -> tuple[dict, dict]:
    """Each query through every way in turn: ({way: results}, {way: seconds})."""
    results, seconds = {way: [] for way in ways}, {way: [] for way in ways}
    for query in queries:
        for way, run in ways.items():
            started = time.perf_counter()
            results[way].append(run(query))
            seconds[way].append(time.perf_counter() - started)
    return results, seconds


def measure(db: str, rows: int, dim: int, n_queries: int, work: Path) -> dict:
    rng = np.random.default_rng(0)
    vectors = clustered_vectors(rows, dim, rng)
    print(f"writing {rows} x {dim} vectors as Parquet under {work} ...", file=sys.stderr, flush=True)
    write_dataset(vectors, work)
    print(f"loading into {db} ...", file=sys.stderr, flush=True)
    loaded, peak_rss_mb = load_in_child(work, db)
    # Queries near stored vectors, as text queries land near the videos they describe.
    noise = 0.5 / np.sqrt(dim) * rng.standard_normal((n_queries, dim))
    queries = unit(vectors[rng.integers(0, rows, n_queries)] + noise)
    store = VectorStore(db)
    store.search("bench", queries[0], K)  # the first search pays for opening the collection
    name = store.resolve("bench")
    ways = {
        "ann": lambda q: [h["key"] for h in store.search(store.resolve("bench"), q, K, output_fields=["key"])],
        "ann_filtered": lambda q: store.search(store.resolve("bench"), q, K, filter="duration_s < 30",
                                               output_fields=["key"]),
        "exact": lambda q: [f"v{i}#0" for i in exact_top_k(vectors, q)],
    }
    at_once = {"segments": segments(store, name)}
    results, seconds = timed_in_turn(ways, queries)
    at_once.update(figures(results, seconds))
    settled = None
    if not store.is_lite:  # again once the server has indexed what its compactions merged
        settled = {"waited_s": settle(store, name), "segments": segments(store, name)}
        settled.update(figures(*timed_in_turn(ways, queries)))
    load = loaded["videos"]
    return {
        "engine": store.engine, "rows": rows, "dim": dim, "queries": n_queries, "k": K,
        "load": {"seconds": load["seconds"], "rows_per_s": load["rows_per_s"],
                 "insert_rows_per_s": load["insert_rows_per_s"], "index_s": load["index_s"],
                 "peak_rss_mb": round(peak_rss_mb, 1)},
        "after_load": at_once, "settled": settled,
    }


def figures(results: dict, seconds: dict) -> dict:
    ann, exact = results["ann"], results["exact"]
    return {
        "ann": percentiles_ms(seconds["ann"]),
        "ann_filtered": percentiles_ms(seconds["ann_filtered"]),
        "exact_numpy": percentiles_ms(seconds["exact"]),
        "recall_at_10": round(float(np.mean([len(set(a) & set(e)) / K for a, e in zip(ann, exact)])), 4),
        "speedup_p50_over_exact": round(float(np.median(seconds["exact"]) / np.median(seconds["ann"])), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="up to 1,000,000 (4 GB of vectors at 1024)")
    parser.add_argument("--dim", type=int, default=1024,
                        help="vector width (ViT-B/32 makes 512; 1024, as RN50's, is the harder case)")
    parser.add_argument("--queries", type=int, default=200)
    engine = parser.add_mutually_exclusive_group()
    engine.add_argument("--db", help="vector database URI (default: a new milvus-lite directory)")
    engine.add_argument("--server", action="store_true", help="start a Milvus 2.3.5 server for this run")
    parser.add_argument("--server-setting", type=milvus_setting, action="append", default=[], metavar="KEY=VALUE",
                        help="a milvus.yaml setting of that server, e.g. dataCoord.segment.maxSize=1024 (repeatable)")
    args = parser.parse_args()
    settings = dict(args.server_setting)

    work = Path(tempfile.mkdtemp(prefix="vidx_bench_"))
    server = MilvusStandalone(work / "milvus", settings) if args.server else None
    try:
        db = server.start() if server else args.db or str(work / "vidx.db")
        result = measure(db, args.rows, args.dim, args.queries, work / "index")
        print(json.dumps({**result, "server_settings": settings}))
    finally:
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)  # the dataset and database: 22 GB at 1M rows


if __name__ == "__main__":
    main()

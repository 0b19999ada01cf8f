"""Query latency and recall of the served index: HNSW in the vector database against exact search.

Usage: python bench/query_latency.py [--rows 100000] [--dim 1024] [--queries 200] [--db URI]

Builds one collection through the load job's own path (VectorStore + load_collection: HNSW on
inner product, validation, alias) in a child process, then, as a server process would, opens it
afresh and times the same query vectors three ways in one run:
`ann` (vector database search, k=10), `ann_filtered` (the same with a scalar filter that keeps
about half the rows) and `exact` (numpy brute force over all vectors in this process). recall@10
is |ANN top-10 ∩ exact top-10| / 10, averaged. Prints one JSON object.

The vectors are clustered (1,000 centres plus noise), as embeddings of a real library are;
uniform random vectors are the worst case for any graph index and no library looks like them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.load import load_collection  # noqa: E402
from storage.vectorstore import VectorStore  # noqa: E402

K = 10
CENTRES = 1000


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = unit(rng.standard_normal((CENTRES, dim)))
    return unit(centres[rng.integers(0, CENTRES, rows)] + 0.6 / np.sqrt(dim) * rng.standard_normal((rows, dim)))


def embeddings_table(vectors: np.ndarray) -> pa.Table:
    n, dim = vectors.shape
    return pa.table({
        "key": [f"v{i}#0" for i in range(n)],
        "video_id": [f"v{i}" for i in range(n)],
        "segment": np.zeros(n, np.int64),
        "duration_s": np.arange(n, dtype=np.float64) % 60,
        "run_id": ["bench"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
    })


def percentiles_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def timed(run, queries: np.ndarray) -> tuple[list, list[float]]:
    results, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        results.append(run(query))
        seconds.append(time.perf_counter() - started)
    return results, seconds


def build(db: str, rows: int, dim: int) -> None:
    print(f"loading {rows} x {dim} vectors into {db} ...", file=sys.stderr, flush=True)
    vectors = clustered_vectors(rows, dim, np.random.default_rng(0))
    load = load_collection(VectorStore(db), embeddings_table(vectors), "bench", "key", {"bench": True}, "v1")
    print(f"loaded in {load['seconds']} s", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024, help="CLIP2Video ViT-B/32 vectors are 1024 wide")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--db", default=None, help="vector database URI (default: a new milvus-lite directory)")
    args = parser.parse_args()

    db = args.db or str(Path(tempfile.mkdtemp(prefix="vidx_bench_")) / "vidx.db")
    # Another process builds, as `vidx load` does; milvus-lite lets one process own the database.
    builder = multiprocessing.get_context("spawn").Process(target=build, args=(db, args.rows, args.dim))
    builder.start()
    builder.join()
    rng = np.random.default_rng(0)
    vectors = clustered_vectors(args.rows, args.dim, rng)  # the same seed: the vectors the child loaded
    # Queries near stored vectors, as text queries land near the videos they describe.
    queries = unit(vectors[rng.integers(0, args.rows, args.queries)] + 0.5 / np.sqrt(args.dim)
                   * rng.standard_normal((args.queries, args.dim)))
    store = VectorStore(db)

    store.search("bench", queries[0], K)  # the first search pays for loading the collection
    ann, ann_seconds = timed(lambda q: [h["key"] for h in store.search("bench", q, K, output_fields=["key"])],
                             queries)
    _, filtered_seconds = timed(lambda q: store.search("bench", q, K, filter="duration_s < 30",
                                                       output_fields=["key"]), queries)
    exact, exact_seconds = timed(lambda q: [f"v{i}#0" for i in np.argsort(-(vectors @ q), kind="stable")[:K]],
                                 queries)
    recall = float(np.mean([len(set(a) & set(e)) / K for a, e in zip(ann, exact)]))
    figures = {
        "rows": args.rows, "dim": args.dim, "queries": args.queries, "k": K, "db": db,
        "ann": percentiles_ms(ann_seconds),
        "ann_filtered": percentiles_ms(filtered_seconds),
        "exact_numpy": percentiles_ms(exact_seconds),
        "recall_at_10": round(recall, 4),
        "speedup_p50_over_exact": round(float(np.median(exact_seconds) / np.median(ann_seconds)), 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

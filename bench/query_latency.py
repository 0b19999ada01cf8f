"""Load throughput, load memory, query latency and recall of the served index, on either engine.

Usage: python bench/query_latency.py [--rows 100000] [--dim 1024] [--queries 200] [--db URI | --server]

Writes clustered synthetic vectors as an index dataset (Parquet parts of 256 rows, 4 segments per
video, a `channel` of 100 values and a `duration_s` of 0-59 at random), loads it with the real
command (`python -m jobs load`, in a child process whose peak RSS is read from the kernel), then,
as a server process would, opens the database afresh and times the same query vectors, each
through every way in turn, so the machine's noise falls on all alike. For each filter of FILTERS
(none, 50 %, 1 %, 1.5 %, 0.33 % of the rows), four ways: `sql` (`SELECT key, score FROM bench
WHERE .. ORDER BY similarity(..) DESC LIMIT 10` as `vidx query` runs it through the query engine:
parse, plan, source, DuckDB; only the query vector is given, as the bench has no model), `search`
(the same question as `vidx search --where` and /search ask it: built from its parts, then the same
executor), `milvus` (the database's own filtered search: on milvus-lite its HNSW walk, what
`vidx search --where` answered with before the one engine) and `numpy` (mask, then product: the
exact answer). `sql` asks a statement it has asked before (a server's plan is made once per
collection version, storage/query/plans.py); `new-sql` a new one each time, parsed and planned.
recall@10 is |top-10 ∩ numpy's top-10| / 10, averaged. Then, on the first
SCAN_QUERIES queries, statements past top-k: a threshold keeping the 100 best rows, the best
segment per video (GROUP BY video_id), and counts (WHERE, GROUP BY), with their recall where a
vector decides the rows.
`--server` starts a Milvus 2.3.5 standalone server (the `milvus` test package) for the run and
stops it by its process id at the end; `--server-setting` overrides its milvus.yaml (the segment
size, for one: a search visits every segment). On a server the queries run twice: at once after
the load, and again when every loaded segment searches through an index (a server merges segments
by compaction after the load has returned, and indexes the merged ones; the server's storage units
are Milvus segments, not a video's). Prints one JSON object.

The vectors are clustered (1,000 centres plus noise), as embeddings of a real library are;
uniform random vectors are the worst case for any graph index and no library looks like them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harness"), str(Path(__file__).resolve().parent)]

# The environment the bench was started in, for the commands it runs: vidx's own imports below set
# milvus-lite's settings in this process (storage/milvus/store.py), which an earlier commit's would not.
ENVIRONMENT = dict(os.environ)
from process_memory import peak_rss_mb  # noqa: E402
from servers import MilvusStandalone, milvus_setting  # noqa: E402
from storage.milvus.store import SEARCH_EF, VectorStore  # noqa: E402
from storage.query import parse_query  # noqa: E402
from storage.query.engine import Engine  # noqa: E402
from storage.query.questions import Search  # noqa: E402
from storage.query.relational import matching_rows  # noqa: E402
from storage.query.served import ServedColumns  # noqa: E402
from storage.schema import MODEL_KEY, row_key  # noqa: E402
from storage.table.dataset import write_part  # noqa: E402

K = 10
CENTRES = 1000
SEGMENTS = 4  # rows per video
# name -> WHERE clause, as users write them, and the share of rows each keeps.
FILTERS = {
    "none": "",
    "50%": "duration_s < 30",
    "1%": "channel = 'c7'",
    "1.5%": "duration_s < 30 AND channel IN ('c1', 'c2', 'c3')",
    "0.33%": "channel = 'c7' AND duration_s < 20",
}
# Statements past top-k are timed on fewer queries (on a server they stream every vector of the collection).
SCAN_QUERIES = 10
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


def write_dataset(vectors: np.ndarray, directory: Path, rng: np.random.Generator,
                  rows_per_part: int = ROWS_PER_PART, model: dict = MODEL, rows: np.ndarray | None = None,
                  status: list[str] | None = None, run_id: str = "bench") -> pa.Table:
    """An index run's videos/ parts: SEGMENTS segments per video, a `channel` of 100 values and a
    `duration_s` of 0-59 drawn at random (the filters' columns), made by `model` (its record), by run
    `run_id`; `rows`: each vector's row number (video row // SEGMENTS, segment row % SEGMENTS;
    default 0..n-1), `status`: each row's (default "ok"). Returns the scalar columns."""
    n, dim = vectors.shape
    metadata = {MODEL_KEY.encode(): json.dumps(model).encode()}
    rows = np.arange(n) if rows is None else rows
    scalars = pa.table({
        "key": [row_key(f"v{i // SEGMENTS}", i % SEGMENTS) for i in rows],
        "video_id": [f"v{i // SEGMENTS}" for i in rows],
        "segment": pa.array(rows % SEGMENTS, pa.int32()),
        "start_s": (rows % SEGMENTS) * 5.0,
        "duration_s": rng.integers(0, 60, n).astype(np.float64),
        "channel": [f"c{c}" for c in rng.integers(0, 100, n)],
        "status": status or ["ok"] * n,
        "run_id": [run_id] * n,
    })
    for start in range(0, n, rows_per_part):
        part = scalars.slice(start, rows_per_part)
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors[start:start + part.num_rows].reshape(-1)), dim)
        write_part(part.append_column("embedding", embedding).replace_schema_metadata(metadata),
                   str(directory / "videos"), "key")
    return scalars


def vidx_in_child(arguments: list[str], code: Path = ROOT) -> tuple[dict, float, float]:
    """`vidx ARGUMENTS` as its own process: (its last stdout line as JSON, its peak RSS in MB, its
    seconds). The peak is the child's VmHWM, read while it runs: the kernel's ru_maxrss of a spawned
    child counts the parent's memory up to the exec (the 4 GB of vectors this process holds at 1M
    rows). `code`: the root of the code that runs."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "jobs", *arguments], cwd=code, stdout=subprocess.PIPE, text=True,
                             env={**ENVIRONMENT, "PYTHONPATH": str(code)})
    peak = 0.0
    while child.poll() is None:
        peak = max(peak, peak_rss_mb(child.pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    output = child.stdout.read()
    if child.returncode:
        raise SystemExit(f"vidx {arguments[0]} failed (exit {child.returncode})")
    return json.loads(output.strip().splitlines()[-1]), peak, seconds


def load_in_child(embeddings: Path, db: str, code: Path = ROOT, collection: str = "bench") -> tuple[dict, float]:
    """`vidx load` as its own process, serving the index as `collection`: (its result, its peak RSS in MB)."""
    result, peak, _ = vidx_in_child(["load", "--embeddings", str(embeddings), "--db", db, "--collection", collection],
                                    code)
    return result, peak


def milvus_segments(store: VectorStore, name: str) -> dict | None:
    """A server's loaded Milvus segments of `name`: how many, and how many search through their index."""
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
        state = milvus_segments(store, name)
        if state is None or state["indexed"] == state["loaded"]:
            break
        time.sleep(10)
    return round(time.perf_counter() - started, 1)


def percentiles_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def exact_top_k(vectors: np.ndarray, query: np.ndarray, kept: np.ndarray | None = None) -> list[int]:
    """Brute force as a fair baseline does it: mask, one product, a partial sort, then the k sorted."""
    rows = np.arange(len(vectors)) if kept is None else kept
    scores = (vectors if kept is None else vectors[kept]) @ query
    top = np.argpartition(-scores, min(K, len(scores)) - 1)[:K]
    return rows[top[np.argsort(-scores[top], kind="stable")]].tolist()


def timed_in_turn(ways: dict, queries: np.ndarray) -> tuple[dict, dict]:
    """Each query through every way in turn: ({way: results}, {way: seconds})."""
    results, seconds = {way: [] for way in ways}, {way: [] for way in ways}
    for query in queries:
        for way, run in ways.items():
            started = time.perf_counter()
            results[way].append(run(query))
            seconds[way].append(time.perf_counter() - started)
    return results, seconds


def sql_way(engine: Engine, sql: str, column: str, planned: bool = True):
    """A statement as `vidx query` runs it (parse, plan, source, DuckDB), the query vector given: the
    bench has no model to encode text, so similarity() names a placeholder ID. `planned`: asked
    again, as a server gets a statement it has seen (planned once: storage/query/plans.py); else a
    new statement each time (another placeholder), parsed and planned anew."""
    asked = itertools.count()

    def run(query: np.ndarray) -> list:
        served = ServedColumns(engine.store)
        statement = sql if planned else sql.replace("ID('query')", f"ID('q{next(asked)}')")
        return engine.answer(served, engine.statement(served, statement), query).column(column).to_pylist()
    return run


def search_way(engine: Engine, where: str):
    """A filtered search as `vidx search --where` and /search ask it (the question built from its
    parts, the same executor), the query vector given."""
    def run(query: np.ndarray) -> list:
        served = ServedColumns(engine.store)
        question = engine.search_question(served, Search(video_id="query", k=K, where=where), "bench")
        return engine.answer(served, question, query).column("key").to_pylist()
    return run


def milvus_way(store: VectorStore, where: str):
    """The database's own filtered search, as vidx called it before (milvus-lite: its HNSW walk)."""
    name = store.resolve("bench")
    store.client.load_collection(name)
    expression = parse_query(f"SELECT key FROM bench WHERE {where}", ServedColumns(store)).filter if where else ""

    def run(query: np.ndarray) -> list:
        hits = store.client.search(name, data=[query], limit=K, filter=expression, output_fields=["key"],
                                   search_params={"metric_type": "IP", "params": {"ef": SEARCH_EF}})
        return [hit["entity"]["key"] for hit in hits[0]]
    return run


def filter_ways(engine: Engine, vectors: np.ndarray, scalars: pa.Table, keys: np.ndarray) -> dict:
    """For each filter: vidx's SQL top-10, its search under the filter, the database's own filtered
    search, and numpy (mask, then product)."""
    ways = {}
    for name, where in FILTERS.items():
        clause = f"WHERE {where} " if where else ""
        statement = f"SELECT key, score FROM bench {clause}ORDER BY similarity(ID('query')) DESC LIMIT {K}"
        ways[f"sql {name}"] = sql_way(engine, statement, "key")
        ways[f"new-sql {name}"] = sql_way(engine, statement, "key", planned=False)
        ways[f"search {name}"] = search_way(engine, where)
        ways[f"milvus {name}"] = milvus_way(engine.store, where)
        kept = matching_rows(scalars, where) if where else None
        ways[f"numpy {name}"] = lambda q, kept=kept: keys[exact_top_k(vectors, q, kept)].tolist()
    return ways


def scan_ways(engine: Engine, vectors: np.ndarray, keys: np.ndarray, videos: np.ndarray) -> tuple[dict, dict]:
    """Statements past top-k (a threshold, the best segment per video, counting): the ways, and
    the exact answer of each for a query."""
    threshold = "SELECT key FROM bench WHERE similarity(ID('query')) >= {t}"
    per_video = (f"SELECT video_id, max(similarity(ID('query'))) AS best FROM bench GROUP BY video_id "
                 f"ORDER BY best DESC LIMIT {K}")

    cutoffs = {}  # query -> the threshold that keeps its 100 best rows, worked out before the timing

    def hundredth(q):
        if q.tobytes() not in cutoffs:
            cutoffs[q.tobytes()] = float(np.sort(vectors @ q)[-100])
        return cutoffs[q.tobytes()]

    def best_videos(q):
        best = (vectors @ q).reshape(-1, SEGMENTS).max(axis=1)  # rows are in video order
        return videos[::SEGMENTS][np.argsort(-best, kind="stable")[:K]].tolist()

    ways = {
        "sql threshold (100 rows)": lambda q: sql_way(engine, threshold.format(t=hundredth(q)), "key")(q),
        "sql best segment per video": sql_way(engine, per_video, "video_id"),
        "sql count where 1%": sql_way(engine, f"SELECT count(*) AS n FROM bench WHERE {FILTERS['1%']}", "n"),
        "sql count group by channel": sql_way(engine, "SELECT channel, count(*) AS n FROM bench GROUP BY channel", "n"),
    }
    exact = {
        "sql threshold (100 rows)": lambda q: keys[np.flatnonzero(vectors @ q >= hundredth(q))].tolist(),
        "sql best segment per video": best_videos,
    }
    return ways, exact


def measure(db: str, rows: int, dim: int, n_queries: int, scan_queries: int, work: Path) -> dict:
    rng = np.random.default_rng(0)
    vectors = clustered_vectors(rows, dim, rng)
    print(f"writing {rows} x {dim} vectors as Parquet under {work} ...", file=sys.stderr, flush=True)
    scalars = write_dataset(vectors, work, rng)
    print(f"loading into {db} ...", file=sys.stderr, flush=True)
    loaded, peak_rss_mb = load_in_child(work, db)
    # Queries near stored vectors, as text queries land near the videos they describe.
    noise = 0.5 / np.sqrt(dim) * rng.standard_normal((n_queries, dim))
    queries = unit(vectors[rng.integers(0, rows, n_queries)] + noise)
    store = VectorStore(db)
    engine = Engine(store)
    name = store.resolve("bench")
    keys, videos = np.asarray(scalars["key"]), np.asarray(scalars["video_id"])
    ways = filter_ways(engine, vectors, scalars, keys)
    scans, scans_exact = scan_ways(engine, vectors, keys, videos)
    ways["sql none"](queries[0])  # the first question pays for opening the collection and its copy
    print(f"timing {n_queries} queries ...", file=sys.stderr, flush=True)

    def run_all() -> dict:
        found = figures(*timed_in_turn(ways, queries))
        expected = {way: [exact(q) for q in queries[:scan_queries]] for way, exact in scans_exact.items()}
        results, seconds = timed_in_turn(scans, queries[:scan_queries])
        for way in scans:
            found[way] = percentiles_ms(seconds[way])
            if way in expected:
                found[way]["recall"] = recall(results[way], expected[way])
        return found

    at_once = {"segments": milvus_segments(store, name), **run_all()}
    settled = None
    if not store.is_lite:  # again once the server has indexed what its compactions merged
        settled = {"waited_s": settle(store, name), "segments": milvus_segments(store, name), **run_all()}
    load = loaded["bench"]
    return {
        "engine": store.engine, "rows": rows, "dim": dim, "queries": n_queries, "scan_queries": scan_queries,
        "k": K, "filters": FILTERS,
        "load": {"seconds": load["seconds"], "rows_per_s": load["rows_per_s"],
                 "insert_rows_per_s": load["insert_rows_per_s"], "index_s": load["index_s"],
                 "peak_rss_mb": round(peak_rss_mb, 1)},
        "after_load": at_once, "settled": settled,
    }


def recall(got: list[list], expected: list[list]) -> float:
    return round(float(np.mean([len(set(g) & set(e)) / max(len(e), 1) for g, e in zip(got, expected)])), 4)


def figures(results: dict, seconds: dict) -> dict:
    """p50/p99 of every way and, against numpy under the same filter, recall@10 of the others;
    each filtered SQL p50 over the unfiltered one."""
    found = {}
    for way in results:
        kind, name = way.split(" ", 1)
        found[way] = percentiles_ms(seconds[way])
        if kind != "numpy":
            found[way]["recall_at_10"] = recall(results[way], results[f"numpy {name}"])
        if kind in ("sql", "new-sql", "search"):
            unfiltered = np.median(seconds[f"{kind} none"])
            found[way]["p50_over_unfiltered"] = round(float(np.median(seconds[way]) / unfiltered), 2)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="up to 1,000,000 (4 GB of vectors at 1024)")
    parser.add_argument("--dim", type=int, default=1024,
                        help="vector width (ViT-B/32 makes 512; 1024, as RN50's, is the harder case)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scan-queries", type=int, default=SCAN_QUERIES,
                        help="queries for the statements past top-k (threshold, per video, counts)")
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
        result = measure(db, args.rows, args.dim, args.queries, args.scan_queries, work / "index")
        print(json.dumps({**result, "server_settings": settings}))
    finally:
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)  # the dataset and database: 22 GB at 1M rows


if __name__ == "__main__":
    main()

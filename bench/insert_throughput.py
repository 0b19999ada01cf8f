"""Insert rows/s into a Milvus server against the number of requests vidx keeps in flight.

Usage: python bench/insert_throughput.py [--rows 200000] [--dim 1024] [--in-flight 1 2 3] [--rounds 2]

Writes clustered vectors as an index dataset (as bench/query_latency.py does), starts a Milvus 2.3.5
standalone server (the `test` extra) on free ports, then inserts the live rows into a new collection
per trial through storage.milvus.stored_rows.inserted_batches, the way `vidx load` inserts, taking the
in-flight counts in turn for each round (the machine's noise falls on all alike); only the insert
is timed (no index build). Prints one JSON object: rows/s per in-flight count, per round and median.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harness"), str(ROOT / "bench")]

from query_latency import clustered_vectors, write_dataset  # noqa: E402
from servers import MilvusStandalone, milvus_setting  # noqa: E402
from storage.table.live_rows import scan_live  # noqa: E402
from storage.milvus.stored_rows import insert_batches, inserted_batches, served_fields  # noqa: E402
from storage.milvus.store import VectorStore  # noqa: E402


def insert_rows_per_s(store: VectorStore, name: str, live, in_flight: int) -> float:
    key, dim = live.key_column, live.schema.field("embedding").type.list_size
    fields = served_fields(live.schema, key)
    store.create_collection(name, key, fields, dim, {})
    started = time.perf_counter()
    rows = sum(batch.num_rows for batch in inserted_batches(store.insert, name, insert_batches(live), in_flight))
    seconds = time.perf_counter() - started
    store.drop(name)
    return rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server-setting", type=milvus_setting, action="append", default=[], metavar="KEY=VALUE",
                        help="a milvus.yaml setting of the server (repeatable)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vidx_insert_bench_"))
    server = MilvusStandalone(work / "milvus", dict(args.server_setting))
    try:
        write_dataset(clustered_vectors(args.rows, args.dim, np.random.default_rng(0)), work / "index")
        live = scan_live(str(work / "index" / "videos"), status="ok")
        store = VectorStore(server.start())
        measured = {n: [] for n in args.in_flight}
        for round_ in range(args.rounds):
            for n in args.in_flight:
                measured[n].append(insert_rows_per_s(store, f"insert_{round_}_{n}", live, n))
                print(f"round {round_ + 1}: {n} in flight: {measured[n][-1]:,.0f} rows/s", file=sys.stderr, flush=True)
        print(json.dumps({"engine": store.engine, "rows": args.rows, "dim": args.dim,
                          "server_settings": dict(args.server_setting),
                          "rows_per_s": {n: {"rounds": [round(r) for r in rates], "median": round(float(np.median(rates)))}
                                         for n, rates in measured.items()}}))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

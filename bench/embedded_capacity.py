"""What the embedded default (milvus-lite) holds on one machine: a load's time and peak RSS, and a
fresh serving process's, against the raw vectors' bytes, before and after a commit in one run.

Usage: python bench/embedded_capacity.py [--rows 100000] [--dim 1024] [--before REV] [--work DIR]

Writes clustered vectors as an index (bench/query_latency.py: 4 segments a video, `channel`,
`duration_s`), then for each version (`--before REV`: a worktree of that commit first, then this
tree): `vidx load` into a milvus-lite database of its own, then QUERIES fresh `vidx query`
processes (a filtered top-k by a video's id, a filtered count), each its own process as a user's
would be. Each process's peak RSS is its VmHWM, read while it runs. Prints one JSON object, and a
markdown table on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harness"), str(Path(__file__).resolve().parent)]

from code_versions import code_versions  # noqa: E402
from query_latency import clustered_vectors, vidx_in_child, write_dataset  # noqa: E402
from report import progress  # noqa: E402

QUERIES = {
    "top-k by id, 1 % filter": "SELECT key, score FROM bench WHERE channel = 'c7' "
                               "ORDER BY similarity(ID('v42')) DESC LIMIT 10",
    "count, filter": "SELECT count(*) AS n FROM bench WHERE duration_s < 30",
}


def one_version(version, index: Path, work: Path, raw_mb: float) -> dict:
    db = str(work / f"{version.name}.db")
    progress(f"{version.name} ({version.rev}): vidx load ...")
    loaded, load_peak, load_s = vidx_in_child(["load", "--embeddings", str(index), "--db", db,
                                               "--collection", "bench"], version.code)
    rows = loaded["bench"]["rows"]
    figures = {"load_s": round(load_s, 1), "rows_per_s": round(rows / load_s, 1), "load_peak_rss_mb": round(load_peak),
               "load_peak_over_raw": round(load_peak / raw_mb, 2), "queries": {}}
    for name, sql in QUERIES.items():
        progress(f"{version.name}: vidx query: {name} ...")
        answer, peak, seconds = vidx_in_child(["query", "--db", db, "--json", sql], version.code)
        figures["queries"][name] = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak),
                                    "peak_over_raw": round(peak / raw_mb, 2), "rows": len(answer)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--before", default=None)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vidx_capacity_"))
    rng = np.random.default_rng(0)
    progress(f"writing {args.rows} x {args.dim} rows under {work} ...")
    write_dataset(clustered_vectors(args.rows, args.dim, rng), work / "index", rng)
    raw_mb = args.rows * args.dim * 4 / 2**20
    out = {"rows": args.rows, "dim": args.dim, "raw_vectors_mb": round(raw_mb), "versions": {}}
    with code_versions(args.before, work) as versions:
        for version in versions:
            out["versions"][version.name] = {"rev": version.rev, **one_version(version, work / "index", work, raw_mb)}
    print(json.dumps(out, indent=1))
    progress(f"| version | load (rows/s) | load peak RSS (÷ raw {out['raw_vectors_mb']} MB) | "
             + " | ".join(f"fresh `vidx query`: {name}: s, peak RSS (÷ raw)" for name in QUERIES) + " |")
    progress("|---" * (3 + len(QUERIES)) + "|")
    for name, figures in out["versions"].items():
        queries = " | ".join(f"{q['seconds']} s, {q['peak_rss_mb']} MB ({q['peak_over_raw']}×)"
                             for q in figures["queries"].values())
        progress(f"| {name} ({figures['rev']}) | {figures['load_s']} s ({figures['rows_per_s']}) | "
                 f"{figures['load_peak_rss_mb']} MB ({figures['load_peak_over_raw']}×) | {queries} |")


if __name__ == "__main__":
    main()

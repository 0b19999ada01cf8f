"""Filtered search through every door, before and after a commit, in one run: recall@10, latency, and
whether /search and /query give the same rows for the same question.

Usage: python bench/search_doors.py [--rows 100000] [--dim 1024] [--queries 100] [--before REV]
           [--cli-queries 3]

Writes clustered vectors (bench/query_latency.py: 4 segments per video, a `channel` of 100 values,
`duration_s` 0-59) as an index whose model is a CLIP2Video of the released ViT-B/32 geometry with
random weights (1024-d, as the real encoder), loads it with this tree's `python -m jobs load` into
milvus-lite, then serves it with `python -m jobs serve` of each version in turn (`--before REV`: a
worktree of that commit, measured first; then this tree), one server at a time on the same
database. Each question is a video's neighbours (`video_id`: the stored vector, no encoding) under
each filter of FILTERS, k = 10: POST /search with the filter in Milvus' spelling (what the page and
`--where` took before), then POST /query with the same question in SQL. recall@10 is against numpy
over the same vectors under the same mask; `p50_over_unfiltered` is each filter's p50 over the
unfiltered /search's of the same version; `same_rows_as_query` the share of questions /search and
/query answered with the same keys. For this tree, `vidx search --where` runs as a process on the
first --cli-queries questions of each filter (its recall; its wall time includes opening the
database and its copy). numpy's times are the masked product and a top-k in this process.
Prints one JSON object, and a markdown table on stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harness"), str(Path(__file__).resolve().parent)]

from code_versions import code_versions  # noqa: E402
from query_latency import clustered_vectors, exact_top_k, load_in_child, write_dataset  # noqa: E402
from random_checkpoint import random_vitb32_checkpoint  # noqa: E402
from serve_load import running_server  # noqa: E402

K = 10
# name -> (the filter in SQL, in Milvus' spelling, a mask over the bench's columns).
FILTERS = {
    "none": ("", "", lambda channel, duration: np.ones(len(channel), bool)),
    "50%": ("duration_s < 30", "duration_s < 30", lambda channel, duration: duration < 30),
    "1%": ("channel = 'c7'", 'channel == "c7"', lambda channel, duration: channel == "c7"),
    "1.5%": ("duration_s < 30 AND channel IN ('c1', 'c2', 'c3')",
             'duration_s < 30 and channel in ["c1", "c2", "c3"]',
             lambda channel, duration: (duration < 30) & np.isin(channel, ["c1", "c2", "c3"])),
    "0.33%": ("channel = 'c7' AND duration_s < 20", 'channel == "c7" and duration_s < 20',
              lambda channel, duration: (channel == "c7") & (duration < 20)),
}


def p50_ms(seconds: list[float]) -> float:
    return round(float(np.median(seconds)) * 1000, 2)


def recall(got: list[list[str]], expected: list[list[str]]) -> float:
    return round(float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, expected)])), 4)


def exact_answers(vectors: np.ndarray, keys: np.ndarray, channel: np.ndarray, duration: np.ndarray,
                  videos: list[int]) -> tuple[dict, dict]:
    """numpy's top-10 keys of each question under each filter, and its p50 ms (mask, product, top-k)."""
    answers, seconds = {name: [] for name in FILTERS}, {name: [] for name in FILTERS}
    for name, (_, _, mask) in FILTERS.items():
        kept = np.flatnonzero(mask(channel, duration))
        for video in videos:
            started = time.perf_counter()
            top = exact_top_k(vectors, vectors[4 * video], None if name == "none" else kept)
            seconds[name].append(time.perf_counter() - started)
            answers[name].append(keys[top].tolist())
    return answers, {name: p50_ms(times) for name, times in seconds.items()}


def statement(video: int, where: str) -> str:
    condition = f"WHERE {where} " if where else ""
    return f"SELECT key, score FROM videos {condition}ORDER BY similarity(ID('v{video}')) DESC LIMIT {K}"


def through_http(url: str, videos: list[int]) -> dict:
    """Each question under each filter through /search (Milvus' spelling) and /query (SQL): keys, seconds."""
    found = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/search", json={"video_id": f"v{videos[0]}", "k": K})  # opens the collection and its copy
        for name, (sql, milvus, _) in FILTERS.items():
            found[name] = {"search": [], "search_s": [], "query": [], "query_s": []}
            for video in videos:
                for door, body in (("search", {"video_id": f"v{video}", "k": K, "where": milvus}),
                                   ("query", {"sql": statement(video, sql)})):
                    started = time.perf_counter()
                    response = client.post(f"/{door}", json=body)
                    found[name][f"{door}_s"].append(time.perf_counter() - started)
                    response.raise_for_status()
                    found[name][door].append([hit["key"] for hit in response.json()])
    return found


def through_cli(db: str, videos: list[int]) -> dict:
    """`vidx search --where` of this tree, a process per question: keys and wall seconds."""
    found = {}
    for name, (sql, _, _) in FILTERS.items():
        found[name] = {"keys": [], "seconds": []}
        for video in videos:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "jobs", "search", "--db", db, "--video-id", f"v{video}",
                                   "-k", str(K), "--where", sql, "--json"], cwd=ROOT, capture_output=True, text=True,
                                  check=True)
            found[name]["seconds"].append(time.perf_counter() - started)
            found[name]["keys"].append([hit["key"] for hit in json.loads(done.stdout.strip().splitlines()[-1])])
    return found


def figures(found: dict, exact: dict) -> dict:
    unfiltered = np.median(found["none"]["search_s"])
    return {name: {"search_p50_ms": p50_ms(doors["search_s"]), "search_recall_at_10": recall(doors["search"], exact[name]),
                   "p50_over_unfiltered": round(float(np.median(doors["search_s"]) / unfiltered), 2),
                   "query_p50_ms": p50_ms(doors["query_s"]), "query_recall_at_10": recall(doors["query"], exact[name]),
                   "same_rows_as_query": round(float(np.mean([a == b for a, b in zip(doors["search"], doors["query"])])),
                                               3)}
            for name, doors in found.items()}


def table(result: dict) -> str:
    lines = ["| version | filter | /search p50 (recall@10) | ÷ unfiltered | /query p50 (recall@10) | same rows | "
             "numpy p50 |", "|---|---|---|---|---|---|---|"]
    for version, by_filter in result["versions"].items():
        for name, f in by_filter.items():
            lines.append(f"| {version} | {name} | {f['search_p50_ms']} ms ({f['search_recall_at_10']}) | "
                         f"{f['p50_over_unfiltered']}× | {f['query_p50_ms']} ms ({f['query_recall_at_10']}) | "
                         f"{f['same_rows_as_query']:.0%} | {result['numpy_p50_ms'][name]} ms |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024, help="1024: the released ViT-B/32 CLIP2Video's width")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--before", help="a commit to measure first, against the same database")
    parser.add_argument("--cli-queries", type=int, default=3)
    args = parser.parse_args()
    from encoders import create_model

    work = Path(tempfile.mkdtemp(prefix="vidx_doors_"))
    rng = np.random.default_rng(0)
    model = create_model("clip2video", checkpoint=str(random_vitb32_checkpoint(work / "vitb32.bin"))).record
    vectors = clustered_vectors(args.rows, args.dim, rng)
    scalars = write_dataset(vectors, work / "index", rng, model=model)
    db = str(work / "vidx.db")
    loaded, _ = load_in_child(work / "index", db, collection="videos")
    keys = np.asarray(scalars["key"])
    channel, duration = np.asarray(scalars["channel"]), scalars["duration_s"].to_numpy()
    videos = rng.choice(args.rows // 4, args.queries, replace=False).tolist()
    exact, numpy_ms = exact_answers(vectors, keys, channel, duration, videos)
    result = {"rows": args.rows, "dim": args.dim, "queries": args.queries, "k": K, "load": loaded["videos"],
              "filters": {name: sql for name, (sql, _, _) in FILTERS.items()}, "numpy_p50_ms": numpy_ms,
              "versions": {}}
    with code_versions(args.before, work) as versions:
        for version in versions:
            print(f"serving {version.name} ({version.rev}) ...", file=sys.stderr, flush=True)
            with running_server(version, db, [], work / f"serve-{version.name}.log") as (url, _):
                result["versions"][f"{version.name} {version.rev}"] = figures(through_http(url, videos), exact)
    cli = through_cli(db, videos[:args.cli_queries])
    result["cli_after"] = {name: {"recall_at_10": recall(f["keys"], exact[name][:args.cli_queries]),
                                  "process_p50_s": round(float(np.median(f["seconds"])), 2)} for name, f in cli.items()}
    print(json.dumps(result))
    print(table(result), file=sys.stderr)


if __name__ == "__main__":
    main()

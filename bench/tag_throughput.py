"""Zero-shot tagging at library scale: `vidx tag` against the same answers through per-video searches.

Usage: python bench/tag_throughput.py [--videos 100000] [--texts 5000] [--dim 1024] [--searches 300]
           [--work DIR]

Synthetic unit vectors (the job's cost does not depend on what they encode), written as `vidx
index` and `vidx texts` write them: videos in 4,096-row parts, one corpus. Each `vidx tag --top-k 5`
runs in a fresh process on a local Ray, at a fifth of the videos and at all of them: videos/s and the
driver's peak RSS (VmHWM; flat in the number of videos is the goal). The comparison serves the
index from milvus-lite (`vidx load`) and asks `vidx search --video-id X --target texts -k 5` per
video, in one process, for `--searches` videos, then the same corpus search with each video's vector
already in hand (a client that read the vectors itself): videos/s of each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.table.dataset import write_part  # noqa: E402
from storage.table.runs import new_run_id  # noqa: E402
from storage.schema import TEXT_KEY, VIDEO_KEY, footer_metadata  # noqa: E402

ROWS_PER_PART = 4096
MODEL = {"spec": {"name": "bench"}, "fingerprint": "bench"}
TOP_K = 5
# One tag run in a fresh process: its stats and the process' peak RSS, as one JSON line.
TAG_IN_CHILD = """
import json, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from jobs.tag import tag
from process_memory import peak_rss_mb, shared_rss_mb
stats = tag({index!r}, "texts", top_k={k})
print(json.dumps({{**stats, "peak_rss_mb": peak_rss_mb(), "shmem_mb": shared_rss_mb()}}))
"""


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> pa.FixedSizeListArray:
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)


def write_videos(directory: Path, first: int, n: int, dim: int, rng: np.random.Generator) -> None:
    run_id = new_run_id()
    for start in range(first, first + n, ROWS_PER_PART):
        ids = [f"v{i:07d}" for i in range(start, min(start + ROWS_PER_PART, first + n))]
        table = pa.table({VIDEO_KEY: [f"{i}#0" for i in ids], "video_id": ids, "segment": pa.array([0] * len(ids),
                          pa.int32()), "status": ["ok"] * len(ids), "run_id": [run_id] * len(ids),
                          "embedding": unit_vectors(rng, len(ids), dim)})
        write_part(table.replace_schema_metadata(footer_metadata(dim, MODEL)), str(directory), VIDEO_KEY)


def write_texts(directory: Path, n: int, dim: int, rng: np.random.Generator) -> None:
    ids = [f"t{i:05d}" for i in range(n)]
    table = pa.table({TEXT_KEY: ids, "text": [f"phrase {i}" for i in ids], "model_fingerprint": ["bench"] * n,
                      "run_id": [new_run_id()] * n, "embedding": unit_vectors(rng, n, dim)})
    write_part(table.replace_schema_metadata(footer_metadata(dim, MODEL)), str(directory), TEXT_KEY)


def tag_in_child(index: Path) -> dict:
    code = TAG_IN_CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"), index=str(index), k=TOP_K)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_video_searches(index: Path, db: str, searches: int, videos: int) -> dict:
    from jobs.load import load
    from storage.milvus.store import VectorStore
    from storage.query.engine import Engine
    from storage.query.questions import Search

    started = time.perf_counter()
    load(str(index), db)
    load_s = time.perf_counter() - started
    store = VectorStore(db, create=False)
    engine = Engine(store)
    chosen = np.random.default_rng(1).choice(videos, searches, replace=False)
    engine.search(Search(video_id=f"v{chosen[0]:07d}", target="texts", k=TOP_K))  # warm: the copy read once
    started = time.perf_counter()
    for i in chosen:
        engine.search(Search(video_id=f"v{i:07d}", target="texts", k=TOP_K))
    by_id = time.perf_counter() - started
    # A client holding the vectors already: only the corpus search (its exact copy, one product each).
    vectors = list(store.vectors(store.resolve("videos"), VIDEO_KEY, [f"v{i:07d}#0" for i in chosen]).values())
    corpus, started = store.exact_copy(store.resolve("texts")), time.perf_counter()
    for vector in vectors:
        corpus.top_k(vector, TOP_K)
    by_vector = time.perf_counter() - started
    return {"load_s": round(load_s, 1), "searches": searches,
            "by_video_id": {"ms_per_video": round(1000 * by_id / searches, 2), "videos_per_s": round(searches / by_id, 1)},
            "by_vector": {"ms_per_video": round(1000 * by_vector / searches, 2),
                          "videos_per_s": round(searches / by_vector, 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--work", help="working directory (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="vidx-tag-bench-"))
    rng = np.random.default_rng(0)
    small, large = work / "small", work / "large"
    fifth = args.videos // 5
    write_videos(small / "videos", 0, fifth, args.dim, rng)
    write_texts(small / "texts" / "texts", args.texts, args.dim, np.random.default_rng(2))
    subprocess.run(["cp", "-r", str(small), str(large)], check=True)
    write_videos(large / "videos", fifth, args.videos - fifth, args.dim, rng)
    figures = {}
    for name, index, n in (("fifth", small, fifth), ("all", large, args.videos)):
        stats = tag_in_child(index)
        figures[name] = {"videos": n, "videos_per_s": stats["videos_per_s"], "score_s": stats["score_s"],
                         "total_s": stats["total_s"], "peak_rss_mb": round(stats["peak_rss_mb"]),
                         "shmem_at_end_mb": round(stats["shmem_mb"])}
        print(json.dumps({name: figures[name]}), flush=True)
    again = tag_in_child(large)  # nothing changed: nothing scored
    figures["rerun_total_s"] = again["total_s"]
    figures["searches"] = per_video_searches(large, str(work / "vidx.db"), args.searches, args.videos)
    figures["rss_ratio"] = round(figures["all"]["peak_rss_mb"] / figures["fifth"]["peak_rss_mb"], 2)
    for way in ("by_video_id", "by_vector"):
        figures[f"speedup_over_searches_{way}"] = round(
            figures["all"]["videos_per_s"] / figures["searches"][way]["videos_per_s"], 1)
    print(json.dumps({"texts": args.texts, "dim": args.dim, "top_k": TOP_K, **figures}, indent=1))


if __name__ == "__main__":
    main()

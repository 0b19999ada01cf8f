"""Near-duplicates at library scale: `vidx duplicates --method ivf` against the exact blocked product,
in one run, on the same cores.

Usage: python bench/duplicates.py [--rows 100000] [--dim 256] [--threshold 0.9] [--probes 2,8,32]
           [--copies 0.01] [--uniform] [--exact-sample K] [--work DIR]

Clustered vectors (bench/query_latency.py's: 1,000 centres plus noise, 4 segments a video) written
as `vidx index` writes them, with near-copies planted among them: a share (--copies) of the videos
get a copy (each segment the original's plus noise, the noise drawn so that copies score from just
below the threshold to 1), and as many videos a re-used segment (one segment of another video, plus
noise, scored the same way). One local Ray with every core, warmed up, then in this process: `vidx
duplicates --method exact` (the reference) and `--method ivf` at each --probes. Each run recomputes
every pair (another method or probes is another setting). Printed for each: seconds (the whole run,
and comparing), pairs found, and the pairs scoring below the threshold when scored again here from
the vectors in float64 (the requirement: 0); for ivf, its recall of the exact run's pairs and its
speedup. Then the incremental path with the default settings (a full run first, unless the last
run had them): a rerun with nothing changed, and a night that adds --copies of the videos again,
each a copy of an old video (one index run's part): its seconds, and how many of those copies it
found. One JSON line a run, then one JSON object. `--uniform` draws the vectors uniformly on the
sphere instead: no clusters for the cells to follow, the worst case of a partition.

`--exact-sample K` (where the whole exact run would take too long, e.g. 10^6 rows): the exact run's
own tasks for K of its query blocks spread over the library (each block against itself and every
block before it, as the full run compares them), timed together with its reading and storing the
library, and scaled by all its row pairs over those the tasks compared; the recall of ivf is then
that of the pairs those tasks found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harness"), str(Path(__file__).resolve().parent)]

from query_latency import SEGMENTS, clustered_vectors, unit, write_dataset  # noqa: E402
from query_latency import MODEL  # noqa: E402
from storage.schema import KEY_SEPARATOR, MODEL_KEY, PAIR_KEY, VIDEO_KEY, row_key  # noqa: E402
from storage.table.dataset import read_live, write_part  # noqa: E402
from storage.table.duplicate_plan import pairs_directory  # noqa: E402
from storage.table.runs import new_run_id  # noqa: E402

# Planted copies score from this far below the threshold (they must not be found) up to COPY_BEST.
BELOW = 0.02
COPY_BEST = 0.999
# Planted pairs this far above the threshold score above it whatever float32 rounding does.
CLEARLY_ABOVE = 1e-4


def pair_key(a: str, b: str) -> str:
    """A pair of videos' key, as vidx duplicates writes it (duplicate_plan.pair_rows): the smaller id first."""
    return KEY_SEPARATOR.join(sorted((a, b)))


def noisy_copy(rows: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit rows scoring about `scores` with `rows`: each plus noise orthogonal to it, of the norm
    that makes cos = score."""
    noise = rng.standard_normal(rows.shape).astype(np.float32)
    noise -= np.sum(noise * rows, axis=1, keepdims=True) * rows
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return unit(rows + np.sqrt(1 / scores[:, None] ** 2 - 1) * noise)


def plant_copies(vectors: np.ndarray, share: float, threshold: float,
                 rng: np.random.Generator) -> tuple[dict, set[str]]:
    """Overwrite some videos' rows (SEGMENTS a video) with near-copies of others': how many of each,
    and the pair keys of those planted clearly above the threshold (any method must find them)."""
    videos = len(vectors) // SEGMENTS
    k = max(1, int(share * videos))
    chosen = rng.permutation(videos)[:4 * k]
    originals, copies, sources, reusers = np.split(chosen, 4)
    segments = (originals[:, None] * SEGMENTS + np.arange(SEGMENTS)).ravel()
    targets = (copies[:, None] * SEGMENTS + np.arange(SEGMENTS)).ravel()
    copy_scores = rng.uniform(threshold - BELOW, COPY_BEST, k)
    vectors[targets] = noisy_copy(vectors[segments], np.repeat(copy_scores, SEGMENTS), rng)
    source_rows = sources * SEGMENTS + rng.integers(0, SEGMENTS, k)
    reused_rows = reusers * SEGMENTS + rng.integers(0, SEGMENTS, k)
    reuse_scores = rng.uniform(threshold - BELOW, COPY_BEST, k)
    vectors[reused_rows] = noisy_copy(vectors[source_rows], reuse_scores, rng)
    above = [(a, b) for pairs, scores in (((originals, copies), copy_scores), ((sources, reusers), reuse_scores))
             for a, b, score in zip(*pairs, scores) if score >= threshold + CLEARLY_ABOVE]
    return {"videos_copied": k, "segments_reused": k}, {pair_key(f"v{a}", f"v{b}") for a, b in above}


def add_night(index: Path, vectors: np.ndarray, share: float, threshold: float,
              rng: np.random.Generator) -> tuple[np.ndarray, set[str]]:
    """A night's new videos, each a copy of an old one (every segment, scoring from just above the
    threshold to COPY_BEST), as one index run's part: all the vectors now, and the copies' pair keys."""
    videos = len(vectors) // SEGMENTS
    k = max(1, int(share * videos))
    originals, new = rng.choice(videos, k, replace=False), np.arange(videos, videos + k)
    copies = noisy_copy(vectors[(originals[:, None] * SEGMENTS + np.arange(SEGMENTS)).ravel()],
                        np.repeat(rng.uniform(threshold + 0.005, COPY_BEST, k), SEGMENTS), rng)
    ids, segments = [f"v{v}" for v in np.repeat(new, SEGMENTS)], np.tile(np.arange(SEGMENTS), k)
    part = pa.table({VIDEO_KEY: [row_key(v, s) for v, s in zip(ids, segments)], "video_id": ids,
                     "segment": pa.array(segments, pa.int32()), "start_s": segments * 5.0, "status": ["ok"] * len(ids),
                     "run_id": [new_run_id()] * len(ids),
                     "embedding": pa.FixedSizeListArray.from_arrays(pa.array(copies.ravel()), vectors.shape[1])})
    write_part(part.replace_schema_metadata({MODEL_KEY: json.dumps(MODEL)}), str(index / "videos"), VIDEO_KEY)
    return np.concatenate([vectors, copies]), {pair_key(f"v{a}", f"v{b}") for a, b in zip(originals, new)}


def below_threshold(pairs, vectors: np.ndarray, threshold: float) -> int:
    """Pairs whose two rows score below `threshold` here, in float64 from the vectors written."""
    def rows(ids: str, segments: str) -> np.ndarray:
        number = pc.cast(pc.utf8_slice_codeunits(pairs[ids], 1), "int64").to_numpy()
        return number * SEGMENTS + pairs[segments].to_numpy()

    first, second = rows("video_id", "segment"), rows("duplicate_id", "duplicate_segment")
    scores = np.einsum("ij,ij->i", vectors[first].astype(np.float64), vectors[second].astype(np.float64))
    assert np.allclose(scores, pairs["score"].to_numpy(), rtol=0, atol=1e-9), "stored scores differ"
    return int(np.sum(scores < threshold))


def run(index: Path, vectors: np.ndarray, threshold: float, **options) -> tuple[dict, set]:
    from jobs.duplicates import duplicates

    started = time.perf_counter()
    stats = duplicates(str(index), threshold=threshold, **options)
    elapsed = time.perf_counter() - started
    pairs = read_live(pairs_directory(str(index)), PAIR_KEY)
    figures = {**options, "total_s": round(elapsed, 2), "compare_s": stats["compare_s"], "pairs": pairs.num_rows,
               "below_threshold": below_threshold(pairs, vectors, threshold),
               **{k: stats[k] for k in ("videos_compared", "method_used", "cells", "sample_rows", "train_s")
                  if k in stats}}
    return figures, set(pairs[PAIR_KEY].to_pylist())


def sampled_exact(index: Path, threshold: float, sample_blocks: int) -> tuple[dict, set]:
    """`--method exact` timed on `sample_blocks` of its query blocks and scaled (the module's
    docstring): its figures, and the pairs of videos those blocks' tasks found."""
    import ray

    from jobs.pipeline.duplicates_run import store_library
    from jobs.pipeline.options import DuplicatesOptions
    from storage.table.duplicate_pairs import RowPairs, best_video_pairs
    from storage.table.duplicate_plan import read_library

    options = DuplicatesOptions.of(threshold=threshold, method="exact")
    started = time.perf_counter()
    library = read_library(str(index))
    stored = store_library(library, 0)
    codes = ray.put((library.videos, library.segments))
    read_s = time.perf_counter() - started
    sizes = np.array(stored.sizes, dtype=np.float64)
    row_pairs = sizes * np.cumsum(sizes)  # query block j against blocks 0..j
    chosen = np.unique(np.linspace(0, len(sizes) - 1, sample_blocks).round().astype(int))[::-1]
    started = time.perf_counter()
    found = ray.get([stored.compare(stored.blocks[j], range(j + 1), options, codes) for j in chosen])
    sample_s = time.perf_counter() - started
    pairs = best_video_pairs(RowPairs.concat(found), library.videos, library.segments)
    ids = library.rows["video_id"].to_numpy(zero_copy_only=False)
    scale = row_pairs.sum() / row_pairs[chosen].sum()
    figures = {"method": "exact", "sampled_blocks": len(chosen), "blocks": len(sizes),
               "sampled_share": round(1 / scale, 4), "sample_s": round(sample_s, 2), "read_s": round(read_s, 2),
               "compare_s": round(sample_s * scale, 1), "total_s": round(read_s + sample_s * scale, 1),
               "pairs_in_sample": len(pairs)}
    return figures, {pair_key(ids[a], ids[b]) for a, b in zip(pairs.first, pairs.second)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--probes", default="2,8,32", help="comma-separated: one ivf run each")
    parser.add_argument("--copies", type=float, default=0.01, help="share of the videos copied (and re-used)")
    parser.add_argument("--uniform", action="store_true", help="unclustered vectors: the worst case of a partition")
    parser.add_argument("--exact-sample", type=int, default=0, metavar="K",
                        help="time exact on K of its query blocks and scale, instead of a whole run")
    parser.add_argument("--work", help="working directory (default: a temporary one)")
    args = parser.parse_args()
    import ray

    work = Path(args.work or tempfile.mkdtemp(prefix="vidx-duplicates-bench-"))
    rng = np.random.default_rng(0)
    if args.uniform:
        vectors = unit(rng.standard_normal((args.rows, args.dim), dtype=np.float32))
    else:
        vectors = clustered_vectors(args.rows, args.dim, rng)
    planted, planted_pairs = plant_copies(vectors, args.copies, args.threshold, rng)
    write_dataset(vectors, work / "index", rng, rows_per_part=4096)
    cores = os.cpu_count()
    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level="WARNING",
             configure_logging=False)
    ray.get([ray.remote(lambda: None).remote() for _ in range(2 * cores)])  # the workers started, not timed
    if args.exact_sample:
        exact, reference = sampled_exact(work / "index", args.threshold, args.exact_sample)
    else:
        exact, reference = run(work / "index", vectors, args.threshold, method="exact")
    print(json.dumps(exact), flush=True)
    runs = [exact]
    for probes in map(int, args.probes.split(",")):
        figures, found = run(work / "index", vectors, args.threshold, method="ivf", probes=probes)
        figures["recall"] = round(len(found & reference) / max(1, len(reference)), 4)
        figures["speedup_total"] = round(exact["total_s"] / figures["total_s"], 2)
        figures["speedup_compare"] = round(exact["compare_s"] / figures["compare_s"], 2)
        figures["planted_found"] = f"{len(found & planted_pairs)} of {len(planted_pairs)}"
        print(json.dumps(figures), flush=True)
        runs.append(figures)
    run(work / "index", vectors, args.threshold)
    incremental = {"nothing_changed": run(work / "index", vectors, args.threshold)[0]}
    vectors, copies = add_night(work / "index", vectors, args.copies, args.threshold, rng)
    night, found = run(work / "index", vectors, args.threshold)
    incremental["night"] = {**night, "copies_added": len(copies), "copies_found": len(copies & found)}
    print(json.dumps(incremental), flush=True)
    print(json.dumps({"rows": args.rows, "videos": args.rows // SEGMENTS, "dim": args.dim, "threshold": args.threshold,
                      "vectors": "uniform" if args.uniform else "clustered", "cores": cores, **planted, "runs": runs,
                      "incremental": incremental}, indent=1))


if __name__ == "__main__":
    main()

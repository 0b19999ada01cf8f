"""The nightly at scale: each step's wall time and the driver's peak RSS over a library of 10^5 and
10^6 already-indexed videos, three kinds of night, before and after a change, in one run; then
the peak RSS of `vidx load` with large parts at two sizes.

Usage: python bench/nightly_scale.py [--sizes 100000 1000000] [--s3-sizes 100000] [--before REV]
           [--compact-rows 600000] [--load-rows 100000 400000] [--load-part-rows 20000]
           [--work DIR] [--out nightly_scale.json]

Nights, each a `jobs.nightly.nightly` in a fresh process on a fresh copy of the same index:
  noop      nothing changed;
  change    1 % of the videos added, 1 % changed (a new file), 1 % deleted;
  metadata  1 % of the videos with a new `genre`.
Each step's time and peak RSS (VmHWM, reset through /proc/self/clear_refs as the step starts) are
taken by wrapping the functions the night calls: plan, encode, refresh, compaction, load (digest,
and on a night with changes the new version's build and swap), retention.

What is real: the night's own code (index planning, metadata refresh, compaction, load, alias
swap, retention) over an index on local disk (or, for `--s3-sizes`, on the S3 test server, moto),
a Milvus 2.3.5 server (one database per size) and Parquet parts of 256 rows as `vidx index` writes
them. What is not: the videos are empty files (the plan stamps
files, it never opens them); decoding and encoding are replaced by writing the rows the encoder
would write (their cost per video is bench/index_throughput.py's, and it does not depend on the
library's size); Ray is not started; vectors are the `tiny` model's 256 dimensions (compaction,
refresh and load read them; planning and the digest never do).

Compaction alone: over `--compact-rows` rows in parts of 256 rows, nothing to drop, every part's
small columns read (no plan before it), each revision in a fresh process.

The load's memory: an index of `--load-rows` rows at D = 1024 in parts of `--load-part-rows`
rows, loaded by `python -m jobs load` of each revision into the same server, its peak RSS read
from the kernel while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harness"), str(Path(__file__).resolve().parent)]

from process_memory import peak_rss_mb  # noqa: E402
from nightly_library import (MODEL, make_library, manifests, write_baseline_index,  # noqa: E402
                             write_encoded_rows)
from report import progress  # noqa: E402

NIGHTS = ("noop", "change", "metadata")
ALIAS = "videos"
STEPS = ("plan", "encode", "refresh", "compaction", "load", "retention")


# --- one night, in its own process (the code of one revision) --------------------------------------

class Steps:
    """Wall time and peak RSS of each call of the wrapped functions, by step name."""

    def __init__(self):
        self.figures: dict[str, dict] = {}

    def wrap(self, module, name: str, step: str, replacement=None) -> None:
        call = replacement or getattr(module, name)

        def timed(*args, **kwargs):
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the RSS now
            started = time.perf_counter()
            result = call(*args, **kwargs)
            figures = self.figures.setdefault(step, {"s": 0.0, "peak_rss_mb": 0.0})
            figures["s"] = round(figures["s"] + time.perf_counter() - started, 3)
            figures["peak_rss_mb"] = round(max(figures["peak_rss_mb"], peak_rss_mb()), 1)
            return result

        setattr(module, name, timed)


def encode_by_writing_rows(run, plan, *_) -> dict:
    """In place of the index run's encode_videos: its rows written, nothing decoded or encoded."""
    import numpy as np

    write_encoded_rows(run, plan.encode, np.random.default_rng(0))
    return {"rows": plan.encode.num_rows, "status_ok": plan.encode.num_rows}


def wrap_night(steps: Steps) -> None:
    """The night's steps timed where the revision has them (jobs/pipeline and storage/milvus since the
    one query engine, jobs/index.py and jobs/nightly.py before), nothing decoded (no Ray)."""
    try:
        import jobs.pipeline.index_run as index_run
        import storage.milvus.publish as load_module
        import storage.milvus.versions as retire_module
        load_name = "publish_index"
    except ImportError:
        import jobs.index as index_run
        import jobs.nightly as load_module
        retire_module, load_name = load_module, "load"
    steps.wrap(index_run, "make_plan", "plan")
    steps.wrap(index_run, "encode_videos", "encode", encode_by_writing_rows)
    steps.wrap(index_run, "refresh_metadata", "refresh")
    steps.wrap(index_run, "compact_dataset", "compaction")
    steps.wrap(load_module, load_name, "load")
    steps.wrap(retire_module, "retire_versions", "retention")
    index_run.connect_checked = lambda *a, **k: None


def night(args: argparse.Namespace) -> None:
    """One nightly run of the code of args.code; prints its steps' figures as one JSON line."""
    sys.path.insert(0, str(args.code))
    import jobs.nightly
    from storage.milvus.store import VectorStore

    started_rss = peak_rss_mb()
    steps = Steps()
    wrap_night(steps)
    # Every night starts from the same version, which the default retention (2) keeps as the previous.
    VectorStore(args.db).swap_alias(ALIAS, args.baseline)
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    stats = jobs.nightly.nightly(args.manifest, args.workdir, args.db, model=MODEL)
    total = {"s": round(time.perf_counter() - started, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}
    print(json.dumps({"steps": steps.figures, "total": total, "rss_at_start_mb": round(started_rss, 1),
                      "unchanged": stats["unchanged"], "retired": stats["retired"],
                      "counts": {k: stats[k] for k in ("added", "changed", "deleted", "reused", "metadata_updated")}}))


def compaction_alone(args: argparse.Namespace) -> None:
    """One compaction that finds nothing to drop, reading every part (no plan before it), by the
    code of args.code; prints its seconds and peak RSS as one JSON line."""
    sys.path.insert(0, str(args.code))
    try:
        from storage.table.compaction import compact
    except ImportError:  # before storage/ by concern
        from storage.compaction import compact

    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    compact(args.workdir, None, "key")
    print(json.dumps({"s": round(time.perf_counter() - started, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}))


# --- setup: the baseline version -------------------------------------------------------------------

def load_baseline(index: Path, db: str) -> str:
    """The baseline index served under ALIAS; the name of its version."""
    from jobs.load import load

    return load(str(index), db, collection=ALIAS)[ALIAS]["collection"]


# --- the parent: every size, revision and night ------------------------------------------------------

def night_workdir(base_index: Path, work: Path, s3: bool) -> str:
    """A fresh copy of the baseline index: a local directory, or a new bucket on the S3 server."""
    if not s3:
        workdir = work / "night"
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.copytree(base_index, workdir)
        return str(workdir)
    import fsspec

    from object_store import new_bucket

    url = f"s3://{new_bucket()}/index"
    fsspec.filesystem("s3").put(f"{base_index}/", url, recursive=True)
    return url


def run_night(version, kind: str, manifest: Path, workdir: str, db: str, baseline: str, env: dict) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "night", "--manifest", str(manifest),
               "--workdir", workdir, "--db", db, "--baseline", baseline, "--code", str(version.code)]
    done = subprocess.run(command, cwd=version.code, capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(version.code)})
    if done.returncode:
        raise SystemExit(f"{version.name} {kind} night failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def nights(args: argparse.Namespace, versions, server: str, record) -> None:
    """Every night kind of every version at each size: local sizes, then S3 sizes."""
    from servers import server_database

    runs = [(n, False) for n in args.sizes] + [(n, True) for n in args.s3_sizes]
    if not runs:
        return
    library = args.work / "library"
    started = time.perf_counter()
    make_library(library, max(n for n, _ in runs))
    progress(f"library of {max(n for n, _ in runs)} empty files in {time.perf_counter() - started:.0f} s")
    with s3_server(args.work, bool(args.s3_sizes)) as env:
        for n, s3 in runs:
            store = "s3" if s3 else "local"
            size_dir = args.work / f"n{n}"
            size_dir.mkdir(parents=True, exist_ok=True)
            paths = manifests(library, n, size_dir)
            started = time.perf_counter()
            write_baseline_index(paths["base"], size_dir / "index")
            db = server_database(server, f"nightly{n}{store}")
            baseline = load_baseline(size_dir / "index", db)
            progress(f"{n} videos: baseline index written and served in {time.perf_counter() - started:.0f} s")
            for version in versions:
                for kind in NIGHTS:
                    with_env = env if s3 else {}
                    workdir = night_workdir(size_dir / "index", args.work, s3)
                    figures = run_night(version, kind, paths[kind], workdir, db, baseline, with_env)
                    record({"videos": n, "store": store, "version": version.name, "night": kind, **figures})
                    progress(f"{n} videos ({store}), {version.name}, {kind} night: {figures['total']['s']:.1f} s")
            shutil.rmtree(size_dir)


@contextlib.contextmanager
def s3_server(work: Path, wanted: bool):
    """The S3 test server (moto) when `wanted`, this process's environment pointed at it; yields
    that environment ({} when not wanted). Stopped by its process id."""
    if not wanted:
        yield {}
        return
    from object_store import aws_environment, start_moto_server

    process, endpoint = start_moto_server(work / "moto.log")
    env = aws_environment(endpoint)
    os.environ.update(env)
    try:
        yield env
    finally:
        process.terminate()
        process.wait(timeout=30)


def compactions(args: argparse.Namespace, versions, record) -> None:
    """Compaction alone over args.compact_rows rows in 256-row parts (narrow vectors: it reads none
    when nothing is dropped), each version in a fresh process."""
    import numpy as np

    from storage.table.dataset import write_part
    from table_formats import ROWS_PER_PART, video_rows

    for rows in args.compact_rows:
        directory = args.work / f"compact{rows}" / "videos"
        rng = np.random.default_rng(4)
        for start in range(0, rows, 65_536):
            table = video_rows(np.arange(start, min(start + 65_536, rows)), "run-1", 8, rng)
            for offset in range(0, table.num_rows, ROWS_PER_PART):
                write_part(table.slice(offset, ROWS_PER_PART), str(directory), "key")
        for version in versions:
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "compact", "--workdir", str(directory),
                                   "--code", str(version.code)], cwd=version.code, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(version.code)}, check=True)
            record({"compact_rows": rows, "version": version.name, **json.loads(done.stdout.splitlines()[-1])})
        shutil.rmtree(directory.parent)


def load_memory(args: argparse.Namespace, versions, server: str, record) -> None:
    """Peak RSS of `vidx load` of each revision, with parts of args.load_part_rows rows at D = 1024."""
    import numpy as np

    from query_latency import load_in_child, write_dataset
    from servers import server_database

    for rows in args.load_rows:
        index = args.work / f"load{rows}"
        rng = np.random.default_rng(2)
        vectors = rng.standard_normal((rows, 1024)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        write_dataset(vectors, index, rng, rows_per_part=args.load_part_rows)
        del vectors
        for version in versions:
            db = server_database(server, f"load{rows}{version.name}")
            result, peak = load_in_child(index, db, code=version.code)
            record({"load_rows": rows, "part_rows": args.load_part_rows, "version": version.name,
                    "peak_rss_mb": round(peak, 1), "seconds": result["bench"]["seconds"]})
        shutil.rmtree(index)


def main() -> None:
    from code_versions import code_versions
    from servers import MilvusStandalone

    args = parse_args()
    if args.command == "night":
        night(args)
        return
    if args.command == "compact":
        compaction_alone(args)
        return
    shutil.rmtree(args.work, ignore_errors=True)  # the server's data of an earlier run included
    args.work.mkdir(parents=True)
    results: list[dict] = []

    def record(result: dict) -> None:
        results.append(result)
        print(json.dumps(result), flush=True)
        args.out.write_text(json.dumps({"config": {"sizes": args.sizes, "before": args.before, "cpus": os.cpu_count(),
                                                   "load_rows": args.load_rows, "load_part_rows": args.load_part_rows},
                                        "results": results}, indent=1))

    milvus = MilvusStandalone(args.work / "milvus")
    try:
        server = milvus.start()
        with code_versions(args.before, args.work) as versions:
            compactions(args, versions, record)
            nights(args, versions, server, record)
            load_memory(args, versions, server, record)
    finally:
        milvus.stop()
    print(report(results), file=sys.stderr)


def night_total(night: dict) -> dict:
    """The night's seconds, and its peak RSS: the largest of its steps' (each step restarts the
    kernel's high-water mark, so the night's own mark covers only what followed the last step)."""
    return {"s": night["total"]["s"],
            "peak_rss_mb": max([night["total"]["peak_rss_mb"], *(s["peak_rss_mb"] for s in night["steps"].values())])}


def night_tables(results: list[dict], store: str) -> list[str]:
    """Markdown: each night's steps by size and version, and the ratio of the largest size to the smallest."""
    lines, sizes = [], sorted({r["videos"] for r in results})
    for kind in NIGHTS:
        rows = {(r["videos"], r["version"]): r for r in results if r["night"] == kind}
        if not rows:
            continue
        lines += [f"\n*{kind} night, index on {store} storage: seconds (driver peak RSS, MB)*", "",
                  "| step | version | " + " | ".join(f"{n:,}" for n in sizes) + " | ratio |",
                  "|---|---|" + "---|" * (len(sizes) + 1)]
        for step in [*STEPS, "total"]:
            for version in sorted({v for _, v in rows}, reverse=True):
                cells = [(night_total(rows[n, version]) if step == "total" else rows[n, version]["steps"].get(step))
                         if (n, version) in rows else None for n in sizes]
                if not any(cells):
                    continue
                text = [f"{c['s']:.2f} ({c['peak_rss_mb']:.0f})" if c else "-" for c in cells]
                first, last = cells[0], cells[-1]
                ratio = (f"{last['s'] / max(first['s'], 1e-3):.1f}x ({last['peak_rss_mb'] / first['peak_rss_mb']:.2f}x)"
                         if len(cells) > 1 and first and last else "-")
                lines.append(f"| {step} | {version} | " + " | ".join(text) + f" | {ratio} |")
    return lines


def report(results: list[dict]) -> str:
    """Markdown: each night's steps by store, size and version; the load's peak RSS."""
    lines = []
    for store in ("local", "s3"):
        lines += night_tables([r for r in results if r.get("store") == store], store)
    compacted = [r for r in results if "compact_rows" in r]
    if compacted:
        lines += ["\ncompaction alone, nothing to drop", "| rows | version | seconds | peak RSS MB |", "|---|---|---|---|"]
        lines += [f"| {r['compact_rows']:,} | {r['version']} | {r['s']:.2f} | {r['peak_rss_mb']:.0f} |" for r in compacted]
    loads = [r for r in results if "load_rows" in r]
    if loads:
        lines += ["\nvidx load, peak RSS", "| rows | part rows | version | peak RSS MB | seconds |", "|---|---|---|---|---|"]
        lines += [f"| {r['load_rows']:,} | {r['part_rows']:,} | {r['version']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} |"
                  for r in loads]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["run", "night", "compact"], default="run")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--s3-sizes", type=int, nargs="*", default=[100_000],
                        help="sizes whose index lives on the S3 test server (moto)")
    parser.add_argument("--before", metavar="REV", help="also measure the code of commit REV, first")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vidx-nightly-scale",
                        help="scratch directory, emptied first")
    parser.add_argument("--compact-rows", type=int, nargs="*", default=[600_000])
    parser.add_argument("--load-rows", type=int, nargs="*", default=[100_000, 400_000])
    parser.add_argument("--load-part-rows", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("nightly_scale.json"))
    # A night's own arguments (the parent passes them):
    parser.add_argument("--manifest")
    parser.add_argument("--workdir")
    parser.add_argument("--db")
    parser.add_argument("--baseline", help="the collection every night starts from")
    parser.add_argument("--code", type=Path, help="the root of the code a night runs")
    return parser.parse_args()


if __name__ == "__main__":
    main()

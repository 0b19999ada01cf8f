"""A night's load against a full load, before and after a commit, in one run: the load's time, its
peak RSS, a Milvus server's RSS during it against its steady state, and what readers saw.

Usage: python bench/night_publish.py [--rows 100000] [--dim 256] [--change 0.01] [--engine lite server]
           [--before REV] [--work DIR]

For each engine, on clustered vectors (bench/query_latency.py: 4 segments per video, `channel`,
`duration_s`): last night's index (ROWS rows), and tonight's: the same parts (hard links) plus one
night of change, CHANGE of the videos each added, re-encoded (new vectors, a newer run) and deleted
(their newest row an error, so no longer served). Then, for each version (`--before REV`: a
worktree of that commit, first; then this tree), each load a `python -m jobs load` in its own
process under its own alias (on milvus-lite, in a database of its own): last night's index (this
tree: `--full`), then tonight's. Before the
one engine's nights, tonight's load built a new version of every row; now it writes the change.
On a server, its RSS (VmRSS of its process) is sampled every 0.2 s: steady for 5 s before each
load, and the peak during it; a reader in this process polls grouped counts (`SELECT run_id,
count(*) .. GROUP BY run_id`) through the query engine while tonight's load runs, and every
answer it got is checked to be last night's or tonight's. A version's collections are dropped
before the next version loads. Prints one JSON object, and a markdown table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harness"), str(Path(__file__).resolve().parent)]

from code_versions import code_versions  # noqa: E402
from process_memory import peak_rss_mb, status_mb  # noqa: E402
from query_latency import ENVIRONMENT, SEGMENTS, clustered_vectors, write_dataset  # noqa: E402
from servers import MilvusStandalone  # noqa: E402
from storage.milvus.store import VectorStore  # noqa: E402
from storage.query.engine import Engine  # noqa: E402
from report import progress  # noqa: E402

TONIGHT_RUN = "night-2"  # sorts after write_dataset's run ("bench"): its rows supersede
GROUPED = "SELECT run_id, count(*) AS n FROM {alias} GROUP BY run_id ORDER BY run_id"
STEADY_S = 5.0


def write_tonight(last: Path, tonight: Path, vectors: np.ndarray, change: float, rng: np.random.Generator) -> dict:
    """Tonight's index: last night's parts, linked, and the night's change written as new parts."""
    (tonight / "videos").mkdir(parents=True)
    for part in (last / "videos").iterdir():
        os.link(part, tonight / "videos" / part.name)
    videos, dim = len(vectors) // SEGMENTS, vectors.shape[1]
    each = max(1, int(videos * change))
    picked = rng.choice(videos, 2 * each, replace=False)
    changed, deleted = picked[:each], picked[each:]
    added = np.arange(videos, videos + each)
    rows = np.concatenate([v * SEGMENTS + np.arange(SEGMENTS) for v in np.concatenate([changed, added, deleted])])
    status = ["ok"] * (len(changed) + len(added)) * SEGMENTS + ["error"] * len(deleted) * SEGMENTS
    write_dataset(clustered_vectors(len(rows), dim, rng), tonight, rng, rows=rows, status=status, run_id=TONIGHT_RUN)
    return {"videos_added": len(added), "videos_changed": len(changed), "videos_deleted": len(deleted),
            "rows_written": len(rows)}


class ServerMemory:
    """A server process's RSS: its median over STEADY_S, and its peak while a child process runs."""

    def __init__(self, pid: int | None):
        self.pid = pid

    def steady_mb(self) -> float | None:
        if self.pid is None:
            return None
        samples = []
        for _ in range(int(STEADY_S / 0.2)):
            samples.append(status_mb("VmRSS", self.pid))
            time.sleep(0.2)
        return round(float(np.median(samples)), 1)

    def peak_while(self, child: subprocess.Popen) -> tuple[float, float | None]:
        """(the child's peak RSS, the server's) until the child ends."""
        child_peak, server_peak = 0.0, 0.0
        while child.poll() is None:
            child_peak = max(child_peak, peak_rss_mb(child.pid))
            if self.pid is not None:
                server_peak = max(server_peak, status_mb("VmRSS", self.pid))
            time.sleep(0.2)
        return round(child_peak, 1), (round(server_peak, 1) if self.pid is not None else None)


def timed_load(code: Path, embeddings: Path, db: str, alias: str, memory: ServerMemory, full: bool) -> dict:
    """`python -m jobs load` of the code at `code`, in its own process: its result and figures."""
    arguments = [sys.executable, "-m", "jobs", "load", "--embeddings", str(embeddings), "--db", db,
                 "--collection", alias, *(["--full"] if full else [])]
    steady = memory.steady_mb()
    started = time.perf_counter()
    child = subprocess.Popen(arguments, cwd=code, stdout=subprocess.PIPE, text=True,
                             env={**ENVIRONMENT, "PYTHONPATH": str(code)})
    child_peak, server_peak = memory.peak_while(child)
    seconds = time.perf_counter() - started
    output = child.stdout.read()
    if child.returncode:
        raise SystemExit(f"vidx load failed (exit {child.returncode})")
    return {"seconds": round(seconds, 2), "load_peak_rss_mb": child_peak, "server_steady_rss_mb": steady,
            "server_peak_rss_mb": server_peak, "result": json.loads(output.strip().splitlines()[-1])[alias]}


def reader_answers(db: str, alias: str, stop: threading.Event, seen: list) -> None:
    with VectorStore(db) as store:
        engine = Engine(store)
        while not stop.is_set():
            seen.append(json.dumps(engine.query(GROUPED.format(alias=alias)).to_pylist()))
            time.sleep(0.05)


def one_version(version, last: Path, tonight: Path, db: str, memory: ServerMemory) -> dict:
    """Last night's load, then tonight's, by the code of `version`, served as its own alias."""
    alias = f"bench_{version.name}"
    progress(f"{version.name} ({version.rev}): last night's load ...")
    full = timed_load(version.code, last, db, alias, memory, full=version.name == "after")
    if (last / "served").is_dir():  # one index night after night: what its last load recorded beside it
        shutil.copytree(last / "served", tonight / "served", dirs_exist_ok=True)
    before_answer = None
    seen: list[str] = []
    stop = threading.Event()
    reader = None
    if memory.pid is not None:  # a server: another process may read while the load runs
        with VectorStore(db) as store:
            before_answer = json.dumps(Engine(store).query(GROUPED.format(alias=alias)).to_pylist())
        reader = threading.Thread(target=reader_answers, args=(db, alias, stop, seen))
        reader.start()
    progress(f"{version.name}: tonight's load ...")
    try:
        night = timed_load(version.code, tonight, db, alias, memory, full=False)
    finally:
        stop.set()
        if reader:
            reader.join()
    figures = {"full_load": full, "tonight": night,
               "tonight_over_full": round(night["seconds"] / full["seconds"], 3),
               # the command's own time, without the process' start (imports): the load's work alone
               "load_s_over_full": round(night["result"]["seconds"] / full["result"]["seconds"], 3)}
    if reader:
        with VectorStore(db) as store:
            after_answer = json.dumps(Engine(store).query(GROUPED.format(alias=alias)).to_pylist())
        figures["readers"] = {"answers": len(seen), "last_night": seen.count(before_answer),
                              "tonight": seen.count(after_answer),
                              "neither": sum(answer not in (before_answer, after_answer) for answer in seen)}
    if memory.pid is not None:  # the next version loads beside no other collection
        with VectorStore(db) as store:
            for name in store.versions(alias):
                store.drop(name)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--engine", nargs="+", default=["lite", "server"], choices=["lite", "server"])
    parser.add_argument("--before", default=None)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vidx_night_"))
    rng = np.random.default_rng(0)
    progress(f"writing {args.rows} x {args.dim} rows under {work} ...")
    vectors = clustered_vectors(args.rows, args.dim, rng)
    write_dataset(vectors, work / "last", rng)
    change = write_tonight(work / "last", work / "tonight", vectors, args.change, rng)
    del vectors
    out = {"rows": args.rows, "dim": args.dim, "change": change, "engines": {}}
    with code_versions(args.before, work) as versions:
        for engine in args.engine:
            server = MilvusStandalone(work / "milvus") if engine == "server" else None
            memory = ServerMemory(None)
            try:
                if server:
                    db = server.start()
                    memory = ServerMemory(server.pid)
                out["engines"][engine] = {
                    # milvus-lite: a database per version (this process would hold a lock on one it opened)
                    v.name: one_version(v, work / "last", work / "tonight", db if server else str(work / f"{v.name}.db"),
                                        memory) for v in versions}
                out["engines"][engine]["versions"] = {v.name: v.rev for v in versions}
            finally:
                if server:
                    server.stop()
    print(json.dumps(out, indent=1))
    progress("| engine | version | full load: process (its load) | tonight's: process (its load) | ÷ full: process (load) "
             "| server RSS steady → peak (tonight) | readers: last / tonight / neither |")
    progress("|---|---|---|---|---|---|---|")
    for engine, by_version in out["engines"].items():
        for name, figures in by_version.items():
            if name == "versions":
                continue
            night, readers = figures["tonight"], figures.get("readers", {})
            full = figures["full_load"]
            progress(f"| {engine} | {name} | {full['seconds']} s ({full['result']['seconds']} s) | {night['seconds']} s "
                     f"({night['result']['seconds']} s) | {figures['tonight_over_full']} ({figures['load_s_over_full']}) | "
                     f"{night['server_steady_rss_mb']} → {night['server_peak_rss_mb']} MB"
                     f" | {readers.get('last_night', '-')} / {readers.get('tonight', '-')} / {readers.get('neither', '-')} |")


if __name__ == "__main__":
    main()

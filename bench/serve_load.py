"""Load on `vidx serve`: throughput and latency under closed-loop clients and open-loop rates, per engine.

Usage: python bench/serve_load.py [--engine lite|server|both] [--videos 16] [--seconds 10]
           [--clients 1,8,32,128] [--rates 10,25,50,100] [--routes search,query,video]
           [--before REV] [--server-args "..."] [--stats PATH] [--keep]

Setup, in a temporary work directory: `--videos` synth videos (jobs/synth.py), indexed on a local
Ray by a CLIP2Video of the released ViT-B/32 geometry with random weights (the real encoder's
cost) in 2 s segments, then loaded by `python -m jobs load` into each engine: a milvus-lite
directory (`lite`) or a database on a Milvus 2.3.5 standalone server started for the run
(`server`, harness/servers.py). For each engine, `python -m jobs serve --db DB` runs as a
subprocess; with `--before REV` the server of commit REV (a temporary git worktree, the same
Python) is measured first against the same database, then this tree's; one server at a time, as
milvus-lite lets one process own a database.

Routes: `search` (POST /search, a different six-word caption each request), `query` (POST /query:
`WHERE colour = :c ORDER BY similarity(TEXT(:t)) DESC LIMIT 10`, a different caption each request)
and `video` (POST /search by a stored video_id: no encoding). Closed loop: at each level of --clients, each
client sends a request, waits for its answer, sends the next; a 503 with Retry-After makes it
wait that long, as a well-behaved client does. Open loop (search only): requests at Poisson
arrivals of each --rates level, whatever the answers; latency counts from the scheduled send, so
a late generator cannot hide queueing. Each level runs 2 s (WARMUP_S) uncounted, then --seconds;
the requests still out at its end finish before the next level starts, uncounted.

Prints one JSON object per level to stdout; `requests_per_s`, `p50_ms` and `p99_ms` are of the
200 answers. Each line also gives the CPU (percent of one core) of this load generator, of the
server and, with --engine server, of Milvus: they share this machine's cores. At the end a
markdown table per engine, route and mode goes to stderr; every level is also in the --stats
file (rewritten after each level).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harness"), str(Path(__file__).resolve().parent)]

from encoders.synth import COLOURS, DIRECTIONS, SHAPES  # noqa: E402
from jobs.synth import synth  # noqa: E402
from http_load import WARMUP_S, closed_level, open_level  # noqa: E402
from code_versions import Version, code_versions  # noqa: E402
from random_checkpoint import random_vitb32_checkpoint  # noqa: E402
from servers import MilvusStandalone, free_port, server_database  # noqa: E402
from report import progress  # noqa: E402

# The first search loads the model (seconds for ViT-B/32), and a server may start slower still.
STARTUP_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
K = 10
ADVERBS = ("slowly", "quickly", "smoothly", "steadily")
QUERY_SQL = "SELECT video_id, score FROM videos WHERE colour = :c ORDER BY similarity(TEXT(:t)) DESC LIMIT 10"


# --- setup: library, index, databases, code versions ---------------------------------------------

def build_index(work: Path, videos: int) -> tuple[Path, list[str]]:
    """Synth videos indexed with ViT-B/32 geometry on a local Ray: (the index output, the video ids)."""
    import ray

    from jobs.index import index

    manifest = synth(work / "library", n=videos, seed=0)
    checkpoint = random_vitb32_checkpoint(work / "vitb32.bin")  # kept: the server loads the model from it
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-operator progress would bury ours
    try:
        started = time.perf_counter()
        stats = index(str(manifest), str(work / "index"), model="clip2video", checkpoint=str(checkpoint),
                      segment_seconds=2.0)
        progress(f"indexed {stats['encoded']} videos ({stats['rows_ok']} segments) in "
                 f"{time.perf_counter() - started:.0f} s")
    finally:
        ray.shutdown()
    ids = [json.loads(line)["video_id"] for line in manifest.read_text().splitlines()]
    return work / "index", ids


def load_database(embeddings: Path, db: str) -> None:
    """`vidx load` in a child process: embedded milvus-lite would stay owned by this process after
    an in-process load, and the server could not open it."""
    done = subprocess.run([sys.executable, "-m", "jobs", "load", "--embeddings", str(embeddings), "--db", db],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"vidx load --db {db} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")


@contextlib.contextmanager
def engine_database(engine: str, work: Path, embeddings: Path):
    """A database of `engine` holding the index: yields (its URI, {"milvus": the Milvus server's pid}
    or {} for milvus-lite, which runs in the serving process). A Milvus server is stopped on exit."""
    if engine == "lite":
        db = str(work / "vidx.db")
        load_database(embeddings, db)
        yield db, {}
        return
    milvus = MilvusStandalone(work / "milvus")
    try:
        db = server_database(milvus.start(), "serveload")
        load_database(embeddings, db)
        yield db, {"milvus": milvus.pid}
    finally:
        milvus.stop()


# --- the server ------------------------------------------------------------------------------------

@contextlib.contextmanager
def running_server(version: Version, db: str, extra_args: list[str], log: Path):
    """`python -m jobs serve` of `version` on a free port, answering /healthz; yields (base URL, pid).
    Stopped by its process id: SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
    port = free_port()
    command = [sys.executable, "-m", "jobs", "serve", "--db", db, "--port", str(port), *extra_args]
    # A file, not a pipe: uvicorn logs a line per request, and an unread pipe would block it.
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=version.code, stdout=output, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONPATH": str(version.code)})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server, log)
        yield url, server.pid
    finally:
        server.terminate()
        try:
            server.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}); its log {log}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"the server gave no 200 at {url}/healthz in {STARTUP_TIMEOUT_S:.0f} s; its log: {log}")


def prime(url: str, requests: dict[str, Callable[[], tuple[str, dict]]]) -> None:
    """One request per route, before any level: the first loads the model and opens the collection,
    which no level should count."""
    for route, next_request in requests.items():
        path, body = next_request()
        answer = httpx.post(url + path, json=body, timeout=STARTUP_TIMEOUT_S)
        if answer.status_code != 200:
            raise SystemExit(f"{route}: {path} answered {answer.status_code}: {answer.text[:500]}")


# --- requests --------------------------------------------------------------------------------------

def caption(n: int) -> str:
    """Six words from the synth vocabulary, then n: every request's text differs, so no cache answers it."""
    colour = list(COLOURS)[n % len(COLOURS)]
    shape = SHAPES[n // len(COLOURS) % len(SHAPES)]
    direction = list(DIRECTIONS)[n // 15 % len(DIRECTIONS)]
    return f"a {colour} {shape} moving {direction} {ADVERBS[n // 60 % len(ADVERBS)]} {n}"


def request_maker(route: str, video_ids: list[str]) -> Callable[[], tuple[str, dict]]:
    """A function giving the route's next request as (path, JSON body)."""
    counter = itertools.count()
    if route == "search":
        return lambda: ("/search", {"text": caption(next(counter)), "k": K})
    if route == "query":
        def next_query() -> tuple[str, dict]:
            n = next(counter)
            return "/query", {"sql": QUERY_SQL, "params": {"c": list(COLOURS)[n % len(COLOURS)], "t": caption(n)}}
        return next_query
    return lambda: ("/search", {"video_id": video_ids[next(counter) % len(video_ids)], "k": K})


# --- the run ----------------------------------------------------------------------------------------

def measure_version(engine: str, version: Version, db: str, database_pids: dict[str, int], args,
                    video_ids: list[str], record) -> None:
    """Every route and level against one running server of `version`."""
    log = args.work / f"serve-{engine}-{version.name}.log"
    requests = {route: request_maker(route, video_ids) for route in args.routes}
    with running_server(version, db, shlex.split(args.server_args), log) as (url, pid):
        pids = {"server": pid, **database_pids}
        prime(url, requests)
        for route, next_request in requests.items():
            label = {"engine": engine, "version": version.name, "rev": version.rev, "route": route}
            for clients in args.clients:
                progress(f"{engine} {version.name} ({version.rev}): {route}, {clients} clients ...")
                record({**label, "mode": "closed", **asyncio.run(closed_level(url, next_request, clients,
                                                                              args.seconds, pids))})
            for rate in args.rates if route == "search" else []:
                progress(f"{engine} {version.name} ({version.rev}): {route}, {rate:g} requests/s ...")
                record({**label, "mode": "open", **asyncio.run(open_level(url, next_request, rate,
                                                                          args.seconds, pids))})


def run(args, levels: list[dict]) -> None:
    """Every engine, version, route and level; each level is appended to `levels` as it ends."""
    config = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "cpus": os.cpu_count(), "load_average": os.getloadavg(), "warmup_s": WARMUP_S}

    def record(level: dict) -> None:
        levels.append(level)
        print(json.dumps(level), flush=True)
        args.stats.write_text(json.dumps({"config": config, "levels": levels}, indent=1))

    args.stats.write_text(json.dumps({"config": config, "levels": levels}, indent=1))
    embeddings, video_ids = build_index(args.work, args.videos)
    # Killed with SIGTERM, it still stops its servers and removes its worktree (the finally blocks);
    # set after the index is built: Ray's driver installs a SIGTERM handler of its own.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{Path(__file__).name}: terminated"))
    with code_versions(args.before, args.work) as versions:
        config["revs"] = {v.name: v.rev for v in versions}
        for engine in args.engines:
            progress(f"{engine}: loading the index ...")
            with engine_database(engine, args.work, embeddings) as (db, database_pids):
                for version in versions:
                    measure_version(engine, version, db, database_pids, args, video_ids, record)


# --- the report -------------------------------------------------------------------------------------

def tables(levels: list[dict]) -> str:
    """A markdown table per engine, route and mode: each level's rps, p50, p99 and 503s per version,
    then each version's peak and its rps at the most clients."""
    out = []
    groups = sorted({(lv["engine"], lv["route"], lv["mode"]) for lv in levels}, key=str)
    for engine, route, mode in groups:
        group = [lv for lv in levels if (lv["engine"], lv["route"], lv["mode"]) == (engine, route, mode)]
        load = "clients" if mode == "closed" else "rate"
        versions = list(dict.fromkeys(lv["version"] for lv in group))
        heads = [f"{v} {field}" for v in versions for field in ("rps", "p50 ms", "p99 ms", "503")]
        out += [f"\n{engine} / {route} / {mode} loop", f"| {load} | " + " | ".join(heads) + " |",
                "|---" * (1 + len(heads)) + "|"]
        for value in dict.fromkeys(lv[load] for lv in group):
            cells = []
            for v in versions:
                lv = next(lv for lv in group if lv["version"] == v and lv[load] == value)
                cells += [lv["requests_per_s"], lv["p50_ms"], lv["p99_ms"], lv["status"].get("503", 0)]
            out.append(f"| {value:g} | " + " | ".join(str(c) for c in cells) + " |")
        if mode == "closed":
            out += [peak_line(v, [lv for lv in group if lv["version"] == v]) for v in versions]
    return "\n".join(out)


def peak_line(version: str, levels: list[dict]) -> str:
    peak = max(levels, key=lambda lv: lv["requests_per_s"])
    most = max(levels, key=lambda lv: lv["clients"])
    ratio = most["requests_per_s"] / peak["requests_per_s"] if peak["requests_per_s"] else float("nan")
    return (f"{version}: peak {peak['requests_per_s']} rps at {peak['clients']} clients; "
            f"{most['requests_per_s']} rps at {most['clients']} clients ({ratio:.2f} of the peak)")


def numbers(kind):
    return lambda text: [kind(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["lite", "server", "both"], default="both")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level, after the warm-up")
    parser.add_argument("--clients", type=numbers(int), default=[1, 8, 32, 128], help="closed-loop levels")
    parser.add_argument("--rates", type=numbers(float), default=[10, 25, 50, 100],
                        help="open-loop levels, requests/s (search route only)")
    parser.add_argument("--routes", type=lambda t: t.split(","), default=["search", "query", "video"])
    parser.add_argument("--before", metavar="REV", help="also measure the server of commit REV, first")
    parser.add_argument("--server-args", default="", help='extra arguments of `vidx serve`, e.g. "--max-queue 64" '
                             '(a single word needs the = form: --server-args=--flag)')
    parser.add_argument("--stats", type=Path, default=Path("bench-serve-load.json"),
                        help="every level as JSON (default: ./bench-serve-load.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (printed at the end)")
    args = parser.parse_args()
    if unknown := set(args.routes) - {"search", "query", "video"}:
        parser.error(f"--routes: unknown {', '.join(sorted(unknown))}; choose from search, query, video")
    args.engines = ["lite", "server"] if args.engine == "both" else [args.engine]
    args.work = Path(tempfile.mkdtemp(prefix="vidx-serve-load-"))
    args.stats = args.stats.resolve()
    levels: list[dict] = []
    try:
        run(args, levels)
    finally:  # the levels that ran, even when a later one failed
        progress(tables(levels))
        progress(f"stats: {args.stats}" + (f"; work directory: {args.work}" if args.keep else ""))
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()

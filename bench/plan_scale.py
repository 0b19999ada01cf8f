"""Planning at scale: the time and driver memory to plan a re-run over 10^4 and 10^5 videos, on
local files and on an S3-compatible server (moto), one request per video (the way before) against
one listing per directory (now), in one run.

Usage: python bench/plan_scale.py [--sizes 10000 100000] [--sample 2000] [--out plan_scale.json]

The scenario is a nightly re-run: every video is already indexed, the plan must stamp each file
and find that nothing changed. Each measurement runs in a fresh process, which reports its wall
time and peak RSS. The per-video way on S3 at the largest size is estimated from a timed sample of
`--sample` requests (said so in the output). Objects are put into moto's store in-process, then
served over HTTP: 10^5 PUTs over HTTP take ~25 min here, the store's own API ~15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VIDEOS_PER_DIRECTORY = 1000  # a sharded library: videos/<shard>/<id>.mp4
ROWS_PER_STORED_PART = 1000
DIM = 4  # stored vectors do not matter to planning; the plan never reads them
FINGERPRINT = "bench-model"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def video_uris(root: str, n: int) -> list[str]:
    return [f"{root}/videos/{i // VIDEOS_PER_DIRECTORY:04d}/{i:07d}.mp4" for i in range(n)]


# ---- the S3 server: moto, its objects created through its own store -------------------------------

def serve_s3(port: int, sizes: list[int]) -> None:
    """A moto server whose buckets `lib-<n>` already hold n small objects (runs until killed)."""
    import logging

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    started = time.perf_counter()
    for n in sizes:
        backend.create_bucket(f"lib-{n}", "us-east-1")
        for uri in video_uris("", n):
            backend.put_object(f"lib-{n}", uri.lstrip("/"), b"\0" * 64)
    print(json.dumps({"objects": sum(sizes), "create_s": round(time.perf_counter() - started, 1)}), flush=True)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    while True:
        time.sleep(3600)


def start_s3(sizes: list[int]) -> tuple[subprocess.Popen, dict, dict]:
    from servers import free_port  # harness/servers.py

    port = free_port()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    server = subprocess.Popen([sys.executable, __file__, "serve-s3", "--port", str(port),
                               "--sizes", *map(str, sizes)], env={**os.environ, **env}, stdout=subprocess.PIPE,
                              text=True)
    created = json.loads(server.stdout.readline())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/lib-{sizes[0]}?list-type=2&max-keys=1", timeout=5)
            return server, env, created
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("moto did not come up")


# ---- the library and the previous run's index ----------------------------------------------------

def make_local_library(root: Path, n: int) -> None:
    for uri in video_uris(str(root), n):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 64)


def write_manifest_and_index(root: str, n: int) -> tuple[str, str]:
    """A Parquet manifest of n videos and an index in which all of them are already encoded."""
    import fsspec
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from storage.table.dataset import conform, write_part
    from storage.schema import VIDEOS, video_schema
    from storage.table.files import list_stamps

    uris = video_uris(root, n)
    ids = [Path(u).stem for u in uris]
    manifest = pa.table({"uri": uris, "video_id": ids, "genre": ["library"] * n})
    with fsspec.open(f"{root}/manifest.parquet", "wb") as f:
        pq.write_table(manifest, f)
    stamps = list_stamps(pa.array(uris)).to_pylist()
    schema = video_schema(DIM, manifest.schema, {})
    for start in range(0, n, ROWS_PER_STORED_PART):
        rows = slice(start, start + ROWS_PER_STORED_PART)
        m = len(ids[rows])
        columns = {"key": pa.array([f"{v}#0" for v in ids[rows]]), "video_id": pa.array(ids[rows]),
                   "uri": pa.array(uris[rows]), "genre": pa.array(["library"] * m),
                   "file_stat": pa.array(stamps[rows], pa.string()), "model_fingerprint": pa.array([FINGERPRINT] * m),
                   "status": pa.array(["ok"] * m), "run_id": pa.array(["r0"] * m),
                   "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(m * DIM, np.float32)), DIM)}
        write_part(conform(columns, m, schema), f"{root}/index/{VIDEOS}", "key")
    return f"{root}/manifest.parquet", f"{root}/index"


# ---- what is measured, each in a fresh process ---------------------------------------------------

def plan_per_video(manifest_url: str, output: str, sample: int | None) -> dict:
    """The way before: one stat / HEAD per video from the driver, manifest and stored rows as
    Python dicts (jobs/plan.py before this bench). `sample`: time only the first `sample` videos."""
    from storage.table.dataset import read_live
    from storage.schema import VIDEOS
    from storage.table.files import file_stat
    from storage.table.manifest import read_manifest

    started = time.perf_counter()
    manifest = read_manifest(manifest_url)
    stored = read_live(f"{output}/{VIDEOS}", columns=["key", "video_id", "uri", "file_stat", "model_fingerprint",
                                                       "segment_seconds", "run_id", "genre"])
    previous: dict[str, list[dict]] = {}
    for row in stored.to_pylist():
        previous.setdefault(row["video_id"], []).append(row)
    rows = manifest.select(["uri", "video_id", "genre"]).to_pylist()
    setup_s, started = time.perf_counter() - started, time.perf_counter()
    reused = 0
    for row in rows[:sample] if sample else rows:
        stat = file_stat(row["uri"])
        prior = previous.get(row["video_id"], [])
        reused += bool(prior) and all(r["file_stat"] == stat and r["model_fingerprint"] == FINGERPRINT for r in prior)
    timed = len(rows[:sample] if sample else rows)
    stats_s = time.perf_counter() - started
    return {"reused": reused, "timed_videos": timed, "read_s": round(setup_s, 2), "stats_s": round(stats_s, 2),
            "estimated_seconds": round(setup_s + stats_s * len(rows) / timed, 1)}


def plan_by_listing(manifest_url: str, output: str) -> dict:
    from storage.table.index_plan import make_plan
    from storage.schema import CAPTIONS, VIDEOS
    from storage.table.manifest import read_manifest

    manifest = read_manifest(manifest_url)
    plan = make_plan(manifest, f"{output}/{VIDEOS}", f"{output}/{CAPTIONS}", FINGERPRINT, None)
    return {"reused": plan.reused, "timed_videos": manifest.num_rows}


def measure(args) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    import storage.table.index_plan  # noqa: F401 (imports are not planning: load them before the clock starts)
    import storage.table.files  # noqa: F401

    base = rss_mb()
    started = time.perf_counter()
    if args.way == "per-video":
        result = plan_per_video(args.manifest, args.output, args.sample)
    else:
        result = plan_by_listing(args.manifest, args.output)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**result, "seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1),
                      "plan_rss_mb": round(peak - base, 1)}))


def run_measure(way: str, manifest: str, output: str, env: dict, sample: int | None = None) -> dict:
    command = [sys.executable, __file__, "measure", "--way", way, "--manifest", manifest, "--output", output]
    result = subprocess.run(command + (["--sample", str(sample)] if sample else []), env={**os.environ, **env},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def list_floor(endpoint: str, bucket: str) -> dict:
    """moto's own cost of listing a bucket, 1000 keys a page, without any client parsing: the least
    any listing-based plan can take against this server."""
    started, pages, token = time.perf_counter(), 0, None
    while True:
        query = "list-type=2" + (f"&continuation-token={token}" if token else "")
        body = urllib.request.urlopen(f"{endpoint}/{bucket}?{query}", timeout=600).read().decode()
        pages += 1
        match = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
        if not match:
            return {"pages": pages, "seconds": round(time.perf_counter() - started, 2)}
        token = match.group(1)


def bench(sizes: list[int], sample: int) -> dict:
    results = {"sizes": sizes, "local": {}, "s3": {}}
    work = Path(tempfile.mkdtemp(prefix="vidx-plan-scale-"))
    for n in sizes:
        root = work / f"lib-{n}"
        started = time.perf_counter()
        make_local_library(root, n)
        manifest, output = write_manifest_and_index(str(root), n)
        print(f"local {n}: library and index in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        results["local"][n] = {"per_video": run_measure("per-video", manifest, output, {}),
                               "by_listing": run_measure("by-listing", manifest, output, {})}
        print(json.dumps(results["local"][n]), file=sys.stderr, flush=True)

    server, env, created = start_s3(sizes)
    os.environ.update(env)
    results["s3"]["objects_created"] = created
    try:
        for n in sizes:
            started = time.perf_counter()
            manifest, output = write_manifest_and_index(f"s3://lib-{n}", n)
            print(f"s3 {n}: manifest and index in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            per_video = run_measure("per-video", manifest, output, env, sample if n > sample * 5 else None)
            by_listing = run_measure("by-listing", manifest, output, env)
            results["s3"][n] = {"per_video": per_video, "by_listing": by_listing,
                                "moto_list_floor": list_floor(env["AWS_ENDPOINT_URL"], f"lib-{n}")}
            print(json.dumps(results["s3"][n]), file=sys.stderr, flush=True)
    finally:
        server.kill()
        server.wait()
    for where in ("local", "s3"):
        for n in sizes:
            r = results[where][n]
            r["speedup"] = round(r["per_video"]["estimated_seconds"] / r["by_listing"]["seconds"], 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    p = commands.add_parser("serve-s3")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sizes", type=int, nargs="+", required=True)
    p = commands.add_parser("measure")
    p.add_argument("--way", choices=["per-video", "by-listing"], required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--sample", type=int)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sample", type=int, default=2000, help="HEADs timed to estimate the per-video way on S3")
    parser.add_argument("--out", default="plan_scale.json")
    args = parser.parse_args()
    if args.command == "serve-s3":
        serve_s3(args.port, args.sizes)
    elif args.command == "measure":
        measure(args)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))
        results = bench(args.sizes, args.sample)
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(json.dumps(results))


if __name__ == "__main__":
    main()

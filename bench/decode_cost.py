"""What decoding costs per video, in CPU-seconds and wall seconds, on realistic media, in one run.

Usage: python bench/decode_cost.py [--set full|quick] [--cache DIR] [--repeat 2] [--json-out FILE] [--only-cached]
                                  [--files NAME,...]

Media: bench/realistic_media.py (real footage looped to 720p/1080p, 10 s to 5 min, a keyframe
every 30 or 250 frames, H.264 and AV1), generated once into the cache. Per file, best of
--repeat runs, each in this process (CPU-seconds: time.process_time, all threads counted):

  before / before_seg10 / before_seg5   decode_video as it was at BASELINE_REV (git show), the
                                        paper's sampling, whole video and 10 s / 5 s segments
  exact / exact_seg10 / exact_seg5      decode_video now, same frames
  exact_candidates4                     training's jitter candidates (per_slot=4), whole video
  keyframe / keyframe_seg10             decode_video with seek="keyframe"
  pass_t1                               PyAV, one sequential pass over every frame, one thread:
                                        the reference of the judged ratios
  pass_fastest                          the same pass with PyAV's default threading
  pass_t1_rgb / pass_decord_rgb         one pass converting every frame to RGB: PyAV (one thread)
                                        against decord (FFmpeg 4.1, one thread; not AV1, which it
                                        cannot open), on files up to 60 s
  keyframes_only                        PyAV decoding only the keyframes (skip_frame NONKEY)

Prints a table and, on the last line, one JSON object (also written to --json-out). The full set
takes hours to encode on 2 cores (once); --only-cached measures the files already in the cache.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import av
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from encoders import SamplingCfg  # noqa: E402
from encoders.video import decode_video  # noqa: E402
from realistic_media import DEFAULT_CACHE, bench_specs, ensure_media, media_path  # noqa: E402

# The last commit before GOP-aware decoding: its encoders/video.py is the "before" figure.
BASELINE_REV = "fecb549"
IMAGE_SIZE = 224  # ViT-B/32
TRAINING_CANDIDATES = 4  # jobs/train.py JITTER_CANDIDATES


def load_baseline():
    """encoders/video.py at BASELINE_REV as a module of the encoders package (its relative imports
    resolve to today's config, preprocess and sampling, whose functions it uses are unchanged)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE_REV}:encoders/video.py"],
                            capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("encoders.video_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "encoders"
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{BASELINE_REV}:encoders/video.py", "exec"), module.__dict__)
    return module


def sequential_pass(path: str, threads: int | None, skip: str | None = None) -> int:
    with av.open(path) as container:
        stream = container.streams.video[0]
        if threads is not None:
            stream.codec_context.thread_count = threads
        else:
            stream.thread_type = "AUTO"
        if skip:
            stream.codec_context.skip_frame = skip
        return sum(1 for _ in container.decode(stream))


def rgb_pass(path: str) -> int:
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        return sum(1 for frame in container.decode(stream) if frame.to_ndarray(format="rgb24") is not None)


def decord_rgb_pass(path: str) -> int:
    import decord  # the `test` extra only: bench/gpu_check.py imports this module where decord is absent

    reader = decord.VideoReader(path, num_threads=1)
    for start in range(0, len(reader), 16):  # consecutive frames: decord decodes straight on
        reader.get_batch(list(range(start, min(start + 16, len(reader)))))
    return len(reader)


def measure(fn, repeat: int) -> dict:
    best = None
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        result = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
        best = result if best is None or result["cpu_s"] < best["cpu_s"] else best
    return {k: round(v, 3) for k, v in best.items()}


def cases(path: str, seconds: int, before) -> dict:
    exact, keyframe = SamplingCfg(), SamplingCfg(seek="keyframe")
    decoder_comparison = {"pass_t1_rgb": lambda: rgb_pass(path)}
    if "av1" not in path:
        decoder_comparison["pass_decord_rgb"] = lambda: decord_rgb_pass(path)
    return {
        "before": lambda: before.decode_video(path, exact, IMAGE_SIZE),
        "before_seg10": lambda: before.decode_video(path, exact, IMAGE_SIZE, segment_seconds=10),
        "before_seg5": lambda: before.decode_video(path, exact, IMAGE_SIZE, segment_seconds=5),
        "exact": lambda: decode_video(path, exact, IMAGE_SIZE),
        "exact_seg10": lambda: decode_video(path, exact, IMAGE_SIZE, segment_seconds=10),
        "exact_seg5": lambda: decode_video(path, exact, IMAGE_SIZE, segment_seconds=5),
        "exact_candidates4": lambda: decode_video(path, exact, IMAGE_SIZE, per_slot=TRAINING_CANDIDATES),
        "keyframe": lambda: decode_video(path, keyframe, IMAGE_SIZE),
        "keyframe_seg10": lambda: decode_video(path, keyframe, IMAGE_SIZE, segment_seconds=10),
        "pass_t1": lambda: sequential_pass(path, threads=1),
        "pass_fastest": lambda: sequential_pass(path, threads=None),
        "keyframes_only": lambda: sequential_pass(path, threads=1, skip="NONKEY"),
        **(decoder_comparison if seconds <= 60 else {}),
    }


def frames_used(path: str) -> dict:
    """Frames each mode hands to the encoder (12 per video or per segment at most)."""
    counts = {}
    for name, sampling, seconds in (("exact", SamplingCfg(), None), ("exact_seg10", SamplingCfg(), 10),
                                    ("exact_seg5", SamplingCfg(), 5), ("keyframe", SamplingCfg(seek="keyframe"), None),
                                    ("keyframe_seg10", SamplingCfg(seek="keyframe"), 10)):
        _, segments = decode_video(path, sampling, 32, segment_seconds=seconds)
        counts[name] = sum(len(s.frames) for s in segments)
    return counts


def ratios(row: dict) -> dict:
    reference = row["pass_t1"]["cpu_s"]
    out = {f"{k}_over_pass_t1": round(row[k]["cpu_s"] / reference, 3)
           for k in ("before", "before_seg10", "before_seg5", "exact", "exact_seg10", "exact_seg5",
                     "exact_candidates4", "keyframe")}
    out["exact_over_keyframe"] = round(row["exact"]["cpu_s"] / max(row["keyframe"]["cpu_s"], 1e-6), 1)
    return out


def bench(which: str, cache: Path, repeat: int, only_cached: bool, names: set[str] | None) -> dict:
    torch.set_num_threads(1)  # the resize runs in the decode task, on its one CPU
    before = load_baseline()
    specs = bench_specs(which)
    if only_cached:
        specs = [s for s in specs if media_path(cache, s).exists()]
    if names:
        specs = [s for s in specs if s.name in names]
    media = ensure_media(cache, specs)
    results = {}
    for name, item in media.items():
        path = item["path"]
        row = {case: measure(fn, repeat) for case, fn in cases(path, item["spec"].seconds, before).items()}
        row["frames_used"] = frames_used(path)
        row["mbit_per_s"] = round(item["bytes"] * 8 / item["spec"].seconds / 1e6, 2)
        row["ratios"] = ratios(row)
        results[name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)
    content = next(iter(media.values()))["content"]
    return {"content": content, "baseline_rev": BASELINE_REV, "repeat": repeat, "image_size": IMAGE_SIZE,
            "av": av.__version__, "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            "files": results}


def print_table(result: dict) -> None:
    columns = ["before", "before_seg10", "before_seg5", "exact", "exact_seg10", "exact_seg5", "exact_candidates4",
               "keyframe", "pass_t1", "pass_fastest", "keyframes_only", "pass_t1_rgb", "pass_decord_rgb"]
    print(f"CPU-seconds (wall seconds); content: {result['content']}")
    print("| file | Mbit/s | " + " | ".join(columns) + " | exact / pass_t1 | seg5 / pass_t1 | exact / keyframe |")
    print("|---" * (len(columns) + 5) + "|")
    for name, row in result["files"].items():
        cells = [f"{row[c]['cpu_s']:.2f} ({row[c]['wall_s']:.2f})" if c in row else "-" for c in columns]
        r = row["ratios"]
        print(f"| {name} | {row['mbit_per_s']} | " + " | ".join(cells)
              + f" | {r['exact_over_pass_t1']} | {r['exact_seg5_over_pass_t1']} | {r['exact_over_keyframe']}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["full", "quick"], default="full")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--only-cached", action="store_true", help="skip files the cache does not hold yet")
    parser.add_argument("--files", help="comma-separated file names (e.g. 720p_60s_gop250_h264): only these")
    args = parser.parse_args()
    result = bench(args.set, args.cache, args.repeat, args.only_cached, set(args.files.split(",")) if args.files else None)
    print_table(result)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

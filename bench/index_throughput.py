"""Index throughput in one run on the same videos: decode-only, encode-only, end to end, naive loop.

Usage: python bench/index_throughput.py [--videos 32] [--model vitb32|tiny] [--workers 1]
           [--media synthetic|realistic] [--seek exact|keyframe]

Prints one JSON object. Decode and encode share this machine's CPU cores, so the pipeline bound
is 1 / (1/decode + 1/encode); on a GPU cluster it would be min(decode, encode). `naive` is the
loop a user writes by hand: load the model, then for each video decode and encode, in one process.
Every figure includes its own start-up (Ray's actors, model loading), as a user's run would.
--media synthetic: 320x240 10 s textured clips; realistic: the 60 s 1280x720 H.264 file of
bench/realistic_media.py (real footage, a keyframe every 250 frames), generated once into its cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from encoders import create_model  # noqa: E402
from encoders.video import decode_video  # noqa: E402
from jobs.index import index  # noqa: E402
from jobs.pipeline.cluster import connect, embedder_pool, embedder_resources  # noqa: E402
from jobs.pipeline.index_run import VIDEOS_PER_DECODE_TASK  # noqa: E402
from jobs.pipeline.workers import VideoEmbedder, decode_item  # noqa: E402
from media import VideoSpec, write_video  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_checkpoint import random_vitb32_checkpoint  # noqa: E402
from realistic_media import DEFAULT_CACHE, MediaSpec, ensure_media  # noqa: E402

REALISTIC = MediaSpec(720, 60, 250)


def make_videos(directory: Path, count: int, media: str) -> list[Path]:
    """synthetic: camera-like 320x240 clips, 10 s at 30 fps, h264 with 2 s keyframe interval;
    realistic: REALISTIC from the bench media cache."""
    first = directory / "clip_000.mp4"
    if media == "realistic":
        first.write_bytes(Path(ensure_media(DEFAULT_CACHE, [REALISTIC])[REALISTIC.name]["path"]).read_bytes())
    else:
        write_video(first, VideoSpec("clip", width=320, height=240, frames=300, fps=30, gop=60, textured=True))
    paths = [first]
    for i in range(1, count):  # same bytes, different files: equal decode work per video
        path = directory / f"clip_{i:03d}.mp4"
        path.write_bytes(first.read_bytes())
        paths.append(path)
    return paths


def items(paths: list[Path]) -> list[dict]:
    return [{"_row": i, "video_id": p.stem, "uri": str(p), "file_stat": None} for i, p in enumerate(paths)]


def decode_kwargs(model) -> dict:
    return {"sampling": dataclasses.asdict(model.sampling), "image_size": model.image_size,
            "max_frames": model.num_frames, "segment_seconds": None}


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench(videos: int, model_name: str, workers: int, batch_size: int, media: str, seek: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="vidx-bench-"))
    paths = make_videos(work, videos, media)
    checkpoint = str(random_vitb32_checkpoint(work / "ckpt.bin")) if model_name == "vitb32" else None
    name = "clip2video" if model_name == "vitb32" else "tiny"
    overrides = {"sampling": {"seek": seek}} if seek != "exact" else {}
    model = create_model(name, checkpoint=checkpoint, device="cpu", **overrides)
    connect()
    resources = embedder_resources(workers)

    decoded = []
    decode_s = timed(lambda: decoded.extend(
        ray.data.from_items(items(paths), override_num_blocks=math.ceil(videos / VIDEOS_PER_DECODE_TASK))
        .flat_map(decode_item, num_cpus=1, fn_kwargs=decode_kwargs(model))
        .take_all()))
    frames = ray.data.from_items(decoded).materialize()  # encode-only input, already in the object store
    encode_s = timed(lambda: frames.map_batches(
        VideoEmbedder, fn_constructor_kwargs={"spec": model.spec, "threads": resources["threads"]},
        batch_size=batch_size, batch_format="pyarrow", compute=embedder_pool(workers),
        num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"]).materialize())
    end_to_end_s = timed(lambda: index(str(work), str(work / "out"), model=name, checkpoint=checkpoint,
                                       workers=workers, batch_size=batch_size, seek=seek))

    def naive() -> None:
        """As a user would write it: load the model, then decode and encode video by video."""
        naive_model = create_model(name, checkpoint=checkpoint, device="cpu", **overrides)
        for path in paths:
            _, [segment] = decode_video(str(path), naive_model.sampling, naive_model.image_size)
            naive_model.encode_clips([segment.frames])
    naive_s = timed(naive)

    decode_rate, encode_rate, e2e_rate = videos / decode_s, videos / encode_s, videos / end_to_end_s
    bound = 1 / (1 / decode_rate + 1 / encode_rate)
    return {
        "videos": videos, "model": model_name, "workers": workers, "batch_size": batch_size, "media": media,
        "seek": seek,
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "decode_videos_per_s": round(decode_rate, 3), "encode_videos_per_s": round(encode_rate, 3),
        "end_to_end_videos_per_s": round(e2e_rate, 3), "naive_videos_per_s": round(videos / naive_s, 3),
        "pipeline_bound_videos_per_s": round(bound, 3),
        "end_to_end_fraction_of_bound": round(e2e_rate / bound, 3),
        "end_to_end_over_naive": round(e2e_rate * naive_s / videos, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--model", choices=["vitb32", "tiny"], default="vitb32")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--media", choices=["synthetic", "realistic"], default="synthetic")
    parser.add_argument("--seek", choices=["exact", "keyframe"], default="exact")
    args = parser.parse_args()
    print(json.dumps(bench(args.videos, args.model, args.workers, args.batch_size, args.media, args.seek)))


if __name__ == "__main__":
    main()

"""bench/gpu_check.py's steps: what the steps share (Context), and facts, media, encoder and query;
the decoding steps are in gpu_decode.py."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import open_clip
import torch

from encoders import create_model
from errors import one_line
from gpu_prepare import FOOTAGE_CACHE
from random_checkpoint import random_vitb32_checkpoint
from realistic_media import FPS, cached_real_clips, content_label, encode, media_path

logger = logging.getLogger(__name__)

MIB = 2**20
CAPTION = "a person rides a red bike down a steep hill at dusk, take {}"  # ~15 tokens, as search queries run


class Context:
    """What the steps share: the sizes, the device, a scratch folder (removed at the end), the model
    and media once made, and the results of the steps before."""

    def __init__(self, sizes, on_gpu: bool):
        self.sizes = sizes
        self.on_gpu = on_gpu
        self.device = "cuda" if on_gpu else "cpu"
        self.results: dict[str, dict] = {}
        self.media_path: Path | None = None
        self._model = None
        self._model_error: Exception | None = None

    def __enter__(self) -> Context:
        self.work = Path(tempfile.mkdtemp(prefix="vidx-gpu-check-"))  # the random checkpoint alone is ~650 MB
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def model(self):
        """vidx's encoder, built on first use by the step that needs it first; tried once."""
        if self._model is None and self._model_error is None:
            try:
                self._model = build_model(self.sizes.model, self.device, self.work)
            except Exception as e:
                self._model_error = e
                raise
        if self._model_error is not None:
            raise RuntimeError(f"no model: {one_line(self._model_error)}")
        return self._model

    def media(self) -> str:
        if self.media_path is None:
            raise RuntimeError("no media: the media step failed")
        return str(self.media_path)

    def gpu_part(self, measure: Callable[[], dict]) -> dict:
        """A step's GPU-only figures and their gpu_status: skipped off a GPU; a failure here is
        recorded and leaves the rest of the step."""
        if not self.on_gpu:
            return {"gpu_status": "skipped: no GPU"}
        try:
            return {**measure(), "gpu_status": "ok"}
        except Exception as e:
            logger.exception("GPU part failed")
            return {"gpu_status": f"failed: {one_line(e)}"}


def build_model(name: str, device: str, work: Path):
    """As an index run builds it (create_model), in bf16 autocast: the GPU default, and on CPU in the
    rehearsal too, so the same path runs. vitb32: the released geometry, random weights, loaded through
    the official-checkpoint path."""
    if name == "vitb32":
        checkpoint = random_vitb32_checkpoint(work / "vitb32.bin")
        return create_model("clip2video", checkpoint=checkpoint, device=device, precision="bf16")
    return create_model(name, device=device, precision="bf16")


def time_calls(fn: Callable[[], object], min_seconds: float, warmup: int = 2, min_calls: int = 3) -> list[float]:
    """Seconds of each call after `warmup` untimed ones, until min_seconds have passed and min_calls
    are made. vidx's encode_* return host arrays, so each call ends when the device has finished."""
    for _ in range(warmup):
        fn()
    seconds = []
    while len(seconds) < min_calls or sum(seconds) < min_seconds:
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def nvidia_smi_facts() -> dict:
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"]
    line = subprocess.run(query, capture_output=True, text=True, check=True, timeout=30).stdout.splitlines()[0]
    name, driver, memory = (part.strip() for part in line.split(","))
    return {"gpu_name": name, "gpu_driver": driver, "gpu_memory_mib": int(memory)}


def facts(ctx: Context) -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda or "none",
            "open_clip": open_clip.__version__, "av": av.__version__, "cores": os.cpu_count(),
            "device": ctx.device, **ctx.gpu_part(nvidia_smi_facts)}


def media(ctx: Context) -> dict:
    """bench/realistic_media.py's file of the sizes, from the carried footage (procedural without it:
    the machine cannot fetch it)."""
    spec = ctx.sizes.media
    clips = cached_real_clips(FOOTAGE_CACHE)
    path = media_path(ctx.work, spec)
    encode(path, spec, clips)
    ctx.media_path = path
    return {"name": spec.name, "content": content_label(clips), "frames": spec.seconds * FPS,
            "mbit_per_s": round(path.stat().st_size * 8 / spec.seconds / 1e6, 2)}


def encoder_rate(ctx: Context, model, clips: int) -> dict:
    """Frames/s of encode_video on preprocessed frames already on the device: the encoder alone."""
    side = model.image_size
    frames = torch.randn(clips, model.num_frames, 3, side, side, device=model.device)  # (B, T, 3, S, S)
    mask = torch.ones(clips, model.num_frames, dtype=torch.long, device=model.device)
    if ctx.on_gpu:
        torch.cuda.reset_peak_memory_stats()
    seconds = statistics.mean(time_calls(lambda: model.encode_video(frames, mask), ctx.sizes.figure_seconds))
    peak_mib = round(torch.cuda.max_memory_allocated() / MIB) if ctx.on_gpu else None
    return {"clips": clips, "frames": clips * model.num_frames,
            "frames_per_s": round(clips * model.num_frames / seconds, 1), "peak_mib": peak_mib}


def encoder(ctx: Context) -> dict:
    model = ctx.model()
    rows = [encoder_rate(ctx, model, max(1, round(f / model.num_frames))) for f in ctx.sizes.batch_frames]
    best = max(rows, key=lambda row: row["frames_per_s"])
    texts = [CAPTION.format(i) for i in range(ctx.sizes.captions)]
    caption_s = statistics.mean(time_calls(lambda: model.encode_text(texts), ctx.sizes.figure_seconds))
    return {"model": ctx.sizes.model, "precision": str(model.autocast_dtype).removeprefix("torch."),
            "clip_frames": model.num_frames, "batch_clips": [r["clips"] for r in rows],
            "batch_frames": [r["frames"] for r in rows], "frames_per_s": [r["frames_per_s"] for r in rows],
            "best_batch_clips": best["clips"], "best_frames_per_s": best["frames_per_s"],
            "best_videos_per_s": round(best["frames_per_s"] / model.num_frames, 2),
            "captions_per_s": round(len(texts) / caption_s, 1),
            **ctx.gpu_part(lambda: {"gpu_peak_memory_mib": [r["peak_mib"] for r in rows]})}


def query(ctx: Context) -> dict:
    """A text query's encoding as search runs it (encode_text: tokenize, encode, back to the host)."""
    model = ctx.model()

    def median_ms(batch: int) -> float:
        texts = [CAPTION.format(i) for i in range(batch)]
        return round(1000 * statistics.median(time_calls(lambda: model.encode_text(texts), ctx.sizes.figure_seconds,
                                                         warmup=3, min_calls=20)), 3)

    return {"batch_1_ms": median_ms(1), "batch_32_ms": median_ms(32)}

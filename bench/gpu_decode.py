"""bench/gpu_check.py's decoding steps: vidx's decode_video in a process pool on every core, alone and
feeding the encoder (the index pipeline without Ray), NVDEC beside PyAV on the same file, and the
decode cores per GPU derived from the encoder and decode steps."""

from __future__ import annotations

import contextlib
import multiprocessing
import statistics
import threading
import time
from collections.abc import Iterator

import numpy as np
import torch

from decode_cost import sequential_pass
from encoders import SamplingCfg
from encoders.video import decode_video
from gpu_steps import time_calls

MODES = ("exact", "keyframe")  # SamplingCfg.seek
MAX_ROUNDS = 200  # rounds of one video per worker in a measurement: a bound, should one round time near zero
UTILISATION_PERIOD_S = 0.2  # NVML refreshes its utilisation about this often
NVDEC_BATCH = 64  # frames per call when decoding a whole file on the GPU


def init_worker() -> None:
    torch.set_num_threads(1)  # the resize runs in the decoding process, on its one core, as in a Ray decode task


def decode_task(task: tuple) -> tuple[float, np.ndarray | None]:
    """One whole video as an index run decodes it -> (CPU-seconds, its uint8 clip when kept)."""
    path, sampling, image_size, keep = task
    started = time.process_time()
    _, [segment] = decode_video(path, sampling, image_size)
    return time.process_time() - started, segment.frames.numpy() if keep else None


@contextlib.contextmanager
def decode_pool(workers: int) -> Iterator[multiprocessing.pool.Pool]:
    # spawn, not fork: the parent holds a CUDA context and torch's thread pools, which a fork copies half-made
    with multiprocessing.get_context("spawn").Pool(workers, initializer=init_worker) as pool:
        yield pool


def tasks(ctx, mode: str, keep: bool) -> tuple:
    """decode_task's argument: the paper's sampling (every vidx model's), in the given seek mode."""
    return ctx.media(), SamplingCfg(seek=mode), ctx.sizes.image_size, keep


def videos_for(pool, task: tuple, workers: int, seconds: float) -> int:
    """Enough videos to keep every worker busy about `seconds`: one untimed round warms the workers
    (their imports, the file in the page cache), a second one is timed."""
    pool.map(decode_task, [task] * workers, chunksize=1)
    started = time.perf_counter()
    pool.map(decode_task, [task] * workers, chunksize=1)
    rounds = seconds / (time.perf_counter() - started)
    return workers * max(1, min(MAX_ROUNDS, int(rounds)))


def decode(ctx) -> dict:
    """Videos/s of the pool decoding alone, and CPU-seconds per video, per mode."""
    workers = ctx.sizes.workers
    out = {"workers": workers}
    with decode_pool(workers) as pool:
        for mode in MODES:
            task = tasks(ctx, mode, keep=False)
            videos = videos_for(pool, task, workers, ctx.sizes.decode_seconds)
            started = time.perf_counter()
            cpu_s = sum(cpu for cpu, _ in pool.imap_unordered(decode_task, [task] * videos))
            seconds = time.perf_counter() - started
            out |= {f"{mode}_videos": videos, f"{mode}_videos_per_s": round(videos / seconds, 3),
                    f"{mode}_cpu_s_per_video": round(cpu_s / videos, 4)}
    return out


class UtilisationSampler:
    """The GPU's utilisation (NVML's, through torch.cuda.utilization) every UTILISATION_PERIOD_S
    while the block runs; does nothing off a GPU."""

    def __init__(self, on_gpu: bool):
        self.samples: list[int] = []
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True) if on_gpu else None

    def __enter__(self) -> UtilisationSampler:
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _sample(self) -> None:
        try:
            while not self._stop.wait(UTILISATION_PERIOD_S):
                self.samples.append(torch.cuda.utilization())
        except Exception as e:  # pynvml missing, say: the step's gpu_status tells
            self.error = e

    def mean_pct(self) -> float:
        if self.error:
            raise self.error
        if not self.samples:
            raise RuntimeError("no utilisation sample taken")
        return round(statistics.mean(self.samples), 1)


def encode_as_decoded(pool, model, task: tuple, videos: int, batch_clips: int) -> None:
    """The index pipeline without Ray: the pool's workers decode while this process encodes each
    batch of clips as it fills (the pool's result thread keeps collecting meanwhile)."""
    clips = []
    for _, clip in pool.imap_unordered(decode_task, [task] * videos):
        clips.append(clip)
        if len(clips) == batch_clips:
            model.encode_clips(clips)
            clips = []
    if clips:
        model.encode_clips(clips)


def index_pipeline(ctx) -> dict:
    """Videos/s of decode -> encode at the encoder's best batch, and how busy that keeps the GPU."""
    model, workers, encoded = ctx.model(), ctx.sizes.workers, ctx.results["encoder"]
    batch_clips = encoded["best_batch_clips"] or 8  # 8: vidx index's default batch
    # On a CPU the encoder, not decoding, bounds the pipeline: size the run by it too.
    rate = encoded["best_videos_per_s"]
    encoder_videos = int(ctx.sizes.decode_seconds * rate) if rate else MAX_ROUNDS * workers
    out, samplers = {"workers": workers, "batch_clips": batch_clips}, {}
    with decode_pool(workers) as pool:
        for mode in MODES:
            task = tasks(ctx, mode, keep=True)
            videos = max(workers, min(encoder_videos, videos_for(pool, task, workers, ctx.sizes.decode_seconds)))
            with UtilisationSampler(ctx.on_gpu) as samplers[mode]:
                started = time.perf_counter()
                encode_as_decoded(pool, model, task, videos, batch_clips)
                seconds = time.perf_counter() - started
            out |= {f"{mode}_videos": videos, f"{mode}_videos_per_s": round(videos / seconds, 3)}
    return {**out, **ctx.gpu_part(lambda: {f"gpu_util_{m}_pct": s.mean_pct() for m, s in samplers.items()})}


def nvdec_rates(path: str, indices: list[int], min_seconds: float) -> dict:
    """Frames/s of PyNvVideoCodec (NVDEC, RGB planar on the GPU): the whole file, and the paper's
    sampled frames with the file's opening counted, as a decode task opens each video."""
    import PyNvVideoCodec as nvc  # carried when it fits; nothing in vidx uses it

    def open_decoder():
        return nvc.SimpleDecoder(path, gpu_id=0, output_color_type=nvc.OutputColorType.RGBP)

    def whole() -> int:
        decoder, decoded = open_decoder(), 0
        while decoded < len(decoder):
            batch = decoder.get_batch_frames(min(NVDEC_BATCH, len(decoder) - decoded))
            if not batch:
                break
            decoded += len(batch)
        return decoded

    frames = whole()  # also the warm-up: the first session's start stays out of the figures
    whole_s = statistics.mean(time_calls(whole, min_seconds, warmup=0, min_calls=1))
    sampled_s = statistics.mean(time_calls(lambda: open_decoder().get_batch_frames_by_index(indices), min_seconds))
    return {"gpu_decoder": f"PyNvVideoCodec {nvc.__version__}", "gpu_whole_frames_per_s": round(frames / whole_s, 1),
            "gpu_sampled_frames_per_s": round(len(indices) / sampled_s, 1)}


def cpu_seconds(fn) -> tuple[object, float]:
    started = time.process_time()
    return fn(), time.process_time() - started


def hw_decode(ctx) -> dict:
    """The same file decoded whole and at the paper's sampled frames: PyAV on the CPU, NVDEC on the GPU."""
    path = ctx.media()
    frames, one_core_s = cpu_seconds(lambda: sequential_pass(path, threads=1))
    started = time.perf_counter()
    sequential_pass(path, threads=None)  # FFmpeg's own threads, all cores: wall time
    threads_s = time.perf_counter() - started
    (_, [segment]), sampled_s = cpu_seconds(lambda: decode_video(path, SamplingCfg(), ctx.sizes.image_size))
    indices = segment.frame_indices.tolist()
    return {"frames": frames, "sampled_frames": len(indices),
            "cpu_whole_1core_frames_per_s": round(frames / one_core_s, 1),
            "cpu_whole_threads_frames_per_s": round(frames / threads_s, 1),
            "cpu_sampled_1core_frames_per_s": round(len(indices) / sampled_s, 1),
            **ctx.gpu_part(lambda: nvdec_rates(path, indices, ctx.sizes.figure_seconds))}


def decode_cores_per_gpu(ctx) -> dict:
    """Cores one GPU needs to stay fed = encoder videos/s at its best batch / decode videos/s per core."""
    encoded, decoded = ctx.results["encoder"], ctx.results["decode"]
    if encoded["status"] != "ok" or decoded["status"] != "ok":
        raise RuntimeError("needs the encoder and decode steps, and one of them failed")
    rate = encoded["best_videos_per_s"]
    return {"encoder_videos_per_s": rate,
            **{mode: round(rate * decoded["workers"] / decoded[f"{mode}_videos_per_s"], 1) for mode in MODES}}

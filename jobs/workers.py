"""The Ray Data steps of an index run: decode (stateless CPU function) and encode (actors)."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch

from encoders import SamplingCfg, load_model
from encoders.video import VideoDecodeError, decode_video, local_copy
from storage.files import content_fingerprint

logger = logging.getLogger(__name__)


def _base_row(item: dict, segment_seconds: float | None) -> dict:
    return {
        "_row": item["_row"], "video_id": item["video_id"], "uri": item["uri"], "file_stat": item["file_stat"],
        "segment_seconds": segment_seconds, "segment": 0, "start_s": None, "end_s": None, "duration_s": None,
        "fps": None, "width": None, "height": None, "num_frames": None, "sampled_frames": 0, "sampled_times": [],
        "content_fingerprint": None, "status": "error", "error": None,
    }


def decode_item(item: dict, sampling: dict, image_size: int, max_frames: int,
                segment_seconds: float | None) -> list[dict]:
    """One manifest video -> one row per segment with uint8 frames padded to max_frames slots,
    or one 'error' row with the reason. Never raises for a bad video."""
    started = time.perf_counter()
    row = _base_row(item, segment_seconds)
    frames_shape = (max_frames, 3, image_size, image_size)
    try:
        with local_copy(item["uri"]) as path:
            row["content_fingerprint"] = content_fingerprint(path)
            info, segments = decode_video(path, SamplingCfg(**sampling), image_size, segment_seconds)
    except VideoDecodeError as e:
        row.update(error=str(e), key=f"{item['video_id']}#0", frames=np.zeros(frames_shape, np.uint8),
                   decode_seconds=time.perf_counter() - started)
        return [row]
    row.update(duration_s=info.duration_s, fps=info.fps, width=info.width, height=info.height,
               num_frames=info.num_frames, status="ok")
    elapsed = (time.perf_counter() - started) / len(segments)
    rows = []
    for n, segment in enumerate(segments):
        frames = np.zeros(frames_shape, np.uint8)
        frames[: len(segment.frames)] = segment.frames.numpy()
        rows.append({**row, "key": f"{item['video_id']}#{n}", "segment": n, "start_s": segment.start_s,
                     "end_s": segment.end_s, "sampled_frames": len(segment.frames),
                     "sampled_times": segment.frame_times.tolist(), "frames": frames,
                     "decode_seconds": elapsed})
    return rows


def _set_threads(threads: int) -> None:
    """torch's intra-op threads for this actor (see cluster.actor_resources)."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


class VideoEncoder:
    """Ray Data actor: holds one model; turns a batch of decoded rows into embeddings."""

    def __init__(self, spec: dict, threads: int = 1):
        _set_threads(threads)
        self.model = load_model(**spec)
        logger.info("encoder ready: %s on %s", spec["name"], self.model.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        counts = batch["sampled_frames"]
        ok = np.flatnonzero(counts > 0)
        embedding = np.zeros((len(counts), self.model.dim), np.float32)
        if len(ok):
            clips = [torch.from_numpy(batch["frames"][i, : counts[i]]) for i in ok]
            embedding[ok] = self.model.encode_clips(clips)
        out = {k: v for k, v in batch.items() if k != "frames"}
        out["embedding"] = embedding
        out["encode_seconds"] = np.full(len(counts), (time.perf_counter() - started) / len(counts))
        return out


class CaptionEncoder:
    """Ray Data actor: the text tower for manifest captions."""

    def __init__(self, spec: dict, threads: int = 1):
        _set_threads(threads)
        self.model = load_model(**spec)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**batch, "embedding": self.model.encode_text([str(t) for t in batch["text"]])}

"""The Ray Data steps of an index run: decode (a stateless CPU function) and embed (actors that
each hold one VideoTextEncoder)."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pyarrow as pa
import ray
import torch

from encoders import SamplingCfg, create_model
from encoders.video import decode_video, local_copy
from errors import one_line
from storage.table.files import READ_ATTEMPTS, content_fingerprint, is_transient, retry_transient
from storage.schema import EMBEDDING, RUN_COLUMNS, VIDEO_FIELDS, VIDEO_KEY, row_key

logger = logging.getLogger(__name__)

# The columns a decoded row carries: the dataset's, but its key (one per segment) and what the
# sink adds for the whole run.
DECODED_COLUMNS = [f.name for f in VIDEO_FIELDS if f.name != VIDEO_KEY and f.name not in RUN_COLUMNS]


def node_id() -> str | None:
    """The Ray node running this step (None outside Ray): the run's stats say where work ran."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _base_row(item: dict, segment_seconds: float | None) -> dict:
    """A video's row before decoding: an error until it decodes. Every row has every column, so the
    rows of a batch stack whatever became of each video."""
    return {**dict.fromkeys(DECODED_COLUMNS), "video_id": item["video_id"], "uri": item["uri"],
            "file_stat": item["file_stat"], "segment_seconds": segment_seconds, "segment": 0, "sampled_frames": 0,
            "sampled_times": [], "status": "error", "_row": item["_row"], "decode_node": node_id()}


def _read_and_decode(item: dict, sampling: dict, image_size: int, segment_seconds: float | None):
    with local_copy(item["uri"]) as path:
        fingerprint = content_fingerprint(path)
        info, segments = decode_video(path, SamplingCfg(**sampling), image_size, segment_seconds)
    return fingerprint, info, segments


def decode_item(item: dict, sampling: dict, image_size: int, max_frames: int,
                segment_seconds: float | None) -> list[dict]:
    """One manifest video -> one row per segment with uint8 frames padded to max_frames slots,
    or one 'error' row with a one-line reason. Never raises for a video: transient read errors are
    retried here, anything else that goes wrong is this video's error row and the job goes on."""
    started = time.perf_counter()
    row = _base_row(item, segment_seconds)
    frames_shape = (max_frames, 3, image_size, image_size)
    seen = item["file_stat"] is not None  # the plan saw the file: not finding it now is transient
    try:
        row["content_fingerprint"], info, segments = retry_transient(
            lambda: _read_and_decode(item, sampling, image_size, segment_seconds), READ_ATTEMPTS, seen)
    except Exception as e:
        transient = is_transient(e, seen)
        reason = one_line(e)
        row.update(error=f"{reason} (after {READ_ATTEMPTS} attempts)" if transient else reason,
                   error_kind="transient" if transient else "permanent", key=row_key(item["video_id"], 0),
                   frames=np.zeros(frames_shape, np.uint8), decode_seconds=time.perf_counter() - started)
        return [row]
    row.update(duration_s=info.duration_s, fps=info.fps, width=info.width, height=info.height,
               num_frames=info.num_frames, status="ok")
    elapsed = (time.perf_counter() - started) / len(segments)
    rows = []
    for n, segment in enumerate(segments):
        frames = np.zeros(frames_shape, np.uint8)
        frames[: len(segment.frames)] = segment.frames.numpy()
        rows.append({**row, VIDEO_KEY: row_key(item["video_id"], n), "segment": n, "start_s": segment.start_s,
                     "end_s": segment.end_s, "sampled_frames": len(segment.frames),
                     "sampled_times": segment.frame_times.tolist(), "frames": frames,
                     "decode_seconds": elapsed})
    return rows


def _set_threads(threads: int) -> None:
    """torch's intra-op threads for this actor (see cluster.embedder_resources)."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def embedding_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float32 -> fixed_size_list<float32>[D], the stored type."""
    values = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(values, vectors.shape[1])


class VideoEmbedder:
    """Ray Data actor: holds one VideoTextEncoder; turns a batch of decoded rows into embeddings.
    `device`: None puts it on the GPU Ray gave it, if any (see cluster.check_gpus_visible).

    Batches are Arrow tables, not numpy: numpy turns a column that is null in every row of a batch
    (`error` when its videos are all fine) into float NaN, which the strings of the next batch's
    `error` column then cannot be merged with."""

    def __init__(self, spec: dict, threads: int = 1, device: str | None = None):
        _set_threads(threads)
        self.model = create_model(**spec, device=device)
        self.node = node_id()
        logger.info("embedder ready: %s on %s", spec["name"], self.model.device)

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        counts = batch["sampled_frames"].to_numpy()
        frames = np.concatenate([chunk.to_numpy() for chunk in batch["frames"].chunks])  # ray's tensor type
        ok = np.flatnonzero(counts > 0)
        embedding = np.zeros((len(counts), self.model.dim), np.float32)
        if len(ok):
            clips = [torch.from_numpy(frames[i, : counts[i]]) for i in ok]
            embedding[ok] = self.model.encode_clips(clips)
        seconds = (time.perf_counter() - started) / len(counts)
        return (batch.drop_columns(["frames"]).append_column(EMBEDDING, embedding_array(embedding))
                .append_column("encode_seconds", pa.array(np.full(len(counts), seconds)))
                .append_column("encode_node", pa.array([self.node] * len(counts), pa.string())))


class CaptionEmbedder:
    """Ray Data actor: the text tower of one VideoTextEncoder, for manifest captions."""

    def __init__(self, spec: dict, threads: int = 1, device: str | None = None):
        _set_threads(threads)
        self.model = create_model(**spec, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        vectors = self.model.encode_text([str(t) for t in batch["text"]])
        return pa.table({**batch, EMBEDDING: embedding_array(vectors)})

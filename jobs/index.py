"""The index job: manifest -> decode (CPU tasks) -> CLIP2Video (actor pool) -> Parquet parts.

Usage: python -m jobs index --manifest M --output DIR [--model NAME] [--checkpoint PATH]
           [--workers N] [--batch-size B] [--segment-seconds S] [--seek exact|keyframe] [--address ADDR]
Incremental: videos whose file, model and sampling are unchanged are not decoded again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import pyarrow as pa
import pyarrow.compute as pc
import ray

from encoders import load_model
from storage.dataset import (CAPTIONS, VIDEOS, caption_schema, compact, read_live, remove_temp_files, video_schema,
                             write_part)
from storage.manifest import read_manifest
from storage.runs import new_run_id, write_run_record

from .cluster import actor_resources, connect, encoder_pool
from .plan import Plan, make_plan, metadata_columns
from .sink import ROWS_PER_PART, PartsDatasink
from .workers import CaptionEncoder, VideoEncoder, decode_item

logger = logging.getLogger(__name__)

# Videos per decode task. Ray's per-task cost (~0.2 s on a small node) would dominate a task per
# video (measured: 4.7 videos/s with one per task, 7.5 with eight, 2 CPUs, 320x240 clips).
VIDEOS_PER_DECODE_TASK = 8
# Videos per encoder call: 8 x 12 frames = 96 images per forward pass. On CPU, larger batches
# gained nothing (ViT-B/32: 0.54 s/video at 4 vs 0.57 at 1); GPUs want larger ones (--batch-size).
DEFAULT_BATCH_SIZE = 8


def _model_record(encoder) -> dict:
    return {"spec": encoder.spec, "fingerprint": encoder.fingerprint, "dim": encoder.dim,
            "logit_scale": encoder.logit_scale, "config": encoder.cfg.to_dict()}


def _constants(run_id: str, encoder) -> dict:
    return {"run_id": run_id, "model_fingerprint": encoder.fingerprint}


def encode_videos(plan: Plan, manifest: pa.Table, schema: pa.Schema, directory: str, encoder, run_id: str,
                  workers: int, batch_size: int, segment_seconds: float | None, rows_per_part: int) -> dict:
    resources = actor_resources(workers)
    # Ray Data's per-operator reservation would keep half the CPUs for the encoder and writer
    # steps, which need none on CPU nodes: decoding ran at half speed (5.2 vs 3.4 videos/s, 2 CPUs).
    # Memory backpressure still bounds what is in flight.
    ray.data.DataContext.get_current().op_resource_reservation_enabled = False
    sink = PartsDatasink(directory, schema, "key", _constants(run_id, encoder), manifest=manifest,
                         rows_per_part=rows_per_part)
    (
        ray.data.from_items(plan.encode, override_num_blocks=math.ceil(len(plan.encode) / VIDEOS_PER_DECODE_TASK))
        .flat_map(decode_item, num_cpus=1, fn_kwargs={
            "sampling": dataclasses.asdict(encoder.sampling), "image_size": encoder.image_size,
            "max_frames": encoder.num_frames, "segment_seconds": segment_seconds})
        .map_batches(VideoEncoder, fn_constructor_kwargs={"spec": encoder.spec, "threads": resources["threads"]},
                     # Ray Data restarts a lost actor (OOM killer, node gone) and redoes its batches.
                     batch_size=batch_size, batch_format="numpy", compute=encoder_pool(workers),
                     num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"])
        .write_datasink(sink)
    )
    return dict(sink.stats)


def encode_captions(plan: Plan, schema: pa.Schema, directory: str, encoder, run_id: str, workers: int,
                    rows_per_part: int) -> dict:
    resources = actor_resources(workers)
    sink = PartsDatasink(directory, schema, "caption_id", _constants(run_id, encoder), rows_per_part=rows_per_part)
    (
        ray.data.from_items(plan.captions)
        .map_batches(CaptionEncoder, fn_constructor_kwargs={"spec": encoder.spec, "threads": resources["threads"]},
                     batch_size=256, batch_format="numpy", compute=encoder_pool(workers),
                     num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"])
        .write_datasink(sink)
    )
    return dict(sink.stats)


def refresh_metadata(plan: Plan, manifest: pa.Table, schema: pa.Schema, directory: str, run_id: str,
                     rows_per_part: int) -> int:
    """Rewrite the stored rows of videos whose metadata alone changed; no decoding, no encoding."""
    refreshed = manifest.take(pa.array(plan.refresh))
    ids = refreshed["video_id"]
    stored = read_live(directory)
    stored = stored.filter(pc.is_in(stored["video_id"], value_set=ids.combine_chunks()))
    meta = metadata_columns(manifest)
    position = {video_id: i for i, video_id in enumerate(ids.to_pylist())}
    taken = refreshed.select(meta).take(pa.array([position[v] for v in stored["video_id"].to_pylist()]))
    columns = {name: taken[name] for name in meta}
    columns["run_id"] = pa.array([run_id] * stored.num_rows, pa.string())
    rows = pa.Table.from_arrays(
        [columns[f.name].cast(f.type) if f.name in columns else stored[f.name].cast(f.type) for f in schema],
        schema=schema,
    )
    for start in range(0, rows.num_rows, rows_per_part):
        write_part(rows.slice(start, rows_per_part), directory, "key")
    return rows.num_rows


def index(manifest: str, output: str, model: str = "clip-meanp", checkpoint: str | None = None,
          workers: int = 1, batch_size: int = DEFAULT_BATCH_SIZE, segment_seconds: float | None = None,
          seek: str = "exact", address: str | None = None, rows_per_part: int = ROWS_PER_PART) -> dict:
    """Index a manifest into OUTPUT/videos and OUTPUT/captions; returns the run's stats.

    Raises ManifestError / CheckpointError / ValueError before any work starts when the job
    cannot run; a bad video is an 'error' row, never an exception.
    """
    if workers < 1 or batch_size < 1:
        raise ValueError("--workers and --batch-size must be at least 1")
    if segment_seconds is not None and segment_seconds <= 0:
        raise ValueError("--segment-seconds must be positive")
    timings, started = {}, time.perf_counter()
    table = read_manifest(manifest)
    # The seek mode is part of the model's sampling, so of its fingerprint: rows of the two modes
    # never mix in one dataset. The default stays out of the spec (specs recorded before it stay valid).
    overrides = {"sampling": {"seek": seek}} if seek != "exact" else {}
    encoder = load_model(model, checkpoint=checkpoint, device="cpu", **overrides)
    run_id = new_run_id()
    videos_dir, captions_dir = f"{output.rstrip('/')}/{VIDEOS}", f"{output.rstrip('/')}/{CAPTIONS}"
    for directory in (videos_dir, captions_dir):
        remove_temp_files(directory)
    plan = make_plan(table, videos_dir, captions_dir, encoder.fingerprint, segment_seconds)
    timings["plan_s"] = time.perf_counter() - started

    model_record = _model_record(encoder)
    metadata = table.drop_columns(["captions"])
    schema = video_schema(encoder.dim, metadata.schema, model_record)
    video_stats, caption_stats = {}, {}
    if plan.encode or plan.captions:
        connect(address)
    step = time.perf_counter()
    if plan.encode:
        video_stats = encode_videos(plan, metadata, schema, videos_dir, encoder, run_id, workers, batch_size,
                                    segment_seconds, rows_per_part)
    timings["videos_s"] = time.perf_counter() - step
    step = time.perf_counter()
    refreshed = refresh_metadata(plan, metadata, schema, videos_dir, run_id, rows_per_part) if plan.refresh else 0
    if plan.captions:
        caption_stats = encode_captions(plan, caption_schema(encoder.dim, model_record), captions_dir, encoder,
                                        run_id, workers, rows_per_part)
    timings["captions_s"] = time.perf_counter() - step
    step = time.perf_counter()
    video_ids = set(table["video_id"].to_pylist())
    captioned = set(table.filter(pc.greater(pc.list_value_length(table["captions"]), 0))["video_id"].to_pylist())
    compaction = {"videos": compact(videos_dir, video_ids, "key"), "captions": compact(captions_dir, captioned,
                                                                                       "caption_id")}
    timings["compact_s"] = time.perf_counter() - step
    timings["total_s"] = time.perf_counter() - started

    stats = _run_stats(plan, video_stats, caption_stats, refreshed, timings)
    record = {"run_id": run_id, "command": "index", "stats": stats, "compaction": compaction, "model": model_record,
              "config": {"manifest": str(manifest), "output": output, "workers": workers, "batch_size": batch_size,
                         "segment_seconds": segment_seconds, "seek": seek, "rows_per_part": rows_per_part}}
    stats["stats_file"] = write_run_record(output, run_id, record)
    return stats


def _run_stats(plan: Plan, video_stats: dict, caption_stats: dict, refreshed: int, timings: dict) -> dict:
    seconds = timings["videos_s"] or float("nan")
    return {
        "videos": len(plan.encode) + len(plan.reused) + len(plan.refresh),
        "encoded": len(plan.encode),
        "added": len(plan.encode) - len(plan.changed),
        "changed": len(plan.changed),
        "deleted": len(plan.deleted),
        "reused": len(plan.reused),
        "metadata_updated": len(plan.refresh),
        "rows_written": video_stats.get("rows", 0) + refreshed,
        "rows_ok": video_stats.get("status_ok", 0),
        "rows_error": video_stats.get("status_error", 0),
        "captions_encoded": caption_stats.get("rows", 0),
        "captions_reused": plan.captions_reused,
        "frames": video_stats.get("frames", 0),
        "videos_per_s": round(len(plan.encode) / seconds, 3) if plan.encode else 0.0,
        "frames_per_s": round(video_stats.get("frames", 0) / seconds, 3) if plan.encode else 0.0,
        "decode_cpu_s": round(video_stats.get("decode_seconds", 0.0), 3),
        "encode_actor_s": round(video_stats.get("encode_seconds", 0.0), 3),
        **{k: round(v, 3) for k, v in timings.items()},
    }

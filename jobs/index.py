"""The index job: manifest -> decode (CPU tasks) -> CLIP2Video (actor pool) -> Parquet parts.

Usage: python -m jobs index --manifest M --output DIR [--model NAME] [--checkpoint PATH]
           [--workers N] [--batch-size B] [--segment-seconds S] [--seek exact|keyframe] [--address ADDR]
           [--device auto|cpu] [--shared-dir DIR ...] [--retry-errors]
Incremental: videos whose file, model and sampling are unchanged are not decoded again.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import pyarrow as pa
import pyarrow.compute as pc
import ray

from encoders import load_model
from storage.dataset import (CAPTIONS, VIDEOS, caption_schema, compact, conform, read_live, remove_temp_files,
                             video_schema, write_part)
from storage.manifest import read_manifest
from storage.runs import new_run_id, write_run_record

from .cluster import (DEVICES, actor_resources, check_gpus_visible, check_paths_reach_every_node, cluster_address,
                      connect, encoder_pool)
from .errors import UserError
from .plan import Plan, make_plan, metadata_columns
from .sink import NODE_COLUMNS, ROWS_PER_PART, PartsDatasink
from .workers import CaptionEncoder, VideoEncoder, decode_item

logger = logging.getLogger(__name__)

# Videos per decode task. Ray's per-task cost (~0.2 s on a small node) would dominate a task per
# video (measured: 4.7 videos/s with one per task, 7.5 with eight, 2 CPUs, 320x240 clips).
VIDEOS_PER_DECODE_TASK = 8
# Videos per encoder call: 8 x 12 frames = 96 images per forward pass. On CPU, larger batches
# gained nothing (ViT-B/32: 0.54 s/video at 4 vs 0.57 at 1); GPUs want larger ones (--batch-size).
DEFAULT_BATCH_SIZE = 8
# Captions per block: the text tower encodes thousands per second; blocks spread them over the actors.
CAPTIONS_PER_BLOCK = 1024


def _blocks(table: pa.Table, rows: int) -> ray.data.Dataset:
    """One Ray Data block per `rows` rows (one task each), straight from Arrow."""
    return ray.data.from_arrow([table.slice(start, rows) for start in range(0, table.num_rows, rows)])


def _model_record(encoder) -> dict:
    return {"spec": encoder.spec, "fingerprint": encoder.fingerprint, "dim": encoder.dim,
            "logit_scale": encoder.logit_scale, "config": encoder.cfg.to_dict()}


def _constants(run_id: str, encoder) -> dict:
    return {"run_id": run_id, "model_fingerprint": encoder.fingerprint}


def encode_videos(plan: Plan, manifest: pa.Table, schema: pa.Schema, directory: str, encoder, run_id: str,
                  workers: int, batch_size: int, segment_seconds: float | None, rows_per_part: int,
                  device: str | None) -> dict:
    resources = actor_resources(workers)
    # Ray Data's per-operator reservation would keep half the CPUs for the encoder and writer
    # steps, which need none on CPU nodes: decoding ran at half speed (5.2 vs 3.4 videos/s, 2 CPUs).
    # Memory backpressure still bounds what is in flight.
    ray.data.DataContext.get_current().op_resource_reservation_enabled = False
    sink = PartsDatasink(directory, schema, "key", _constants(run_id, encoder), manifest=manifest,
                         rows_per_part=rows_per_part)
    (
        _blocks(plan.encode, VIDEOS_PER_DECODE_TASK)
        .flat_map(decode_item, num_cpus=1, fn_kwargs={
            "sampling": dataclasses.asdict(encoder.sampling), "image_size": encoder.image_size,
            "max_frames": encoder.num_frames, "segment_seconds": segment_seconds})
        .map_batches(VideoEncoder, fn_constructor_kwargs={"spec": encoder.spec, "threads": resources["threads"],
                                                         "device": device},
                     # Ray Data restarts a lost actor (OOM killer, node gone) and redoes its batches.
                     batch_size=batch_size, batch_format="pyarrow", compute=encoder_pool(workers),
                     num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"])
        .write_datasink(sink)
    )
    return dict(sink.stats)


def encode_captions(plan: Plan, schema: pa.Schema, directory: str, encoder, run_id: str, workers: int,
                    rows_per_part: int, device: str | None) -> dict:
    resources = actor_resources(workers)
    sink = PartsDatasink(directory, schema, "caption_id", _constants(run_id, encoder), rows_per_part=rows_per_part)
    (
        _blocks(plan.captions, CAPTIONS_PER_BLOCK)
        .map_batches(CaptionEncoder, fn_constructor_kwargs={"spec": encoder.spec, "threads": resources["threads"],
                                                           "device": device},
                     batch_size=256, batch_format="numpy", compute=encoder_pool(workers),
                     num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"])
        .write_datasink(sink)
    )
    return dict(sink.stats)


def refresh_metadata(plan: Plan, manifest: pa.Table, schema: pa.Schema, directory: str, run_id: str,
                     rows_per_part: int) -> int:
    """Rewrite the stored rows of videos whose metadata alone changed; no decoding, no encoding."""
    refreshed = manifest.take(plan.refresh)
    ids = refreshed["video_id"].combine_chunks()
    stored = read_live(directory)
    stored = stored.filter(pc.is_in(stored["video_id"], value_set=ids))
    taken = refreshed.take(pc.index_in(stored["video_id"], value_set=ids))
    columns = {name: stored[name] for name in stored.column_names}
    columns.update({name: taken[name] for name in metadata_columns(manifest)})
    columns["run_id"] = pa.array([run_id] * stored.num_rows, pa.string())
    rows = conform(columns, stored.num_rows, schema)
    for start in range(0, rows.num_rows, rows_per_part):
        write_part(rows.slice(start, rows_per_part), directory, "key")
    return rows.num_rows


def connect_checked(address: str | None, output: str, manifest: pa.Table, shared_dirs: list[str],
                    device: str) -> None:
    """Join Ray and refuse, before any work, what this cluster cannot do: local paths across
    nodes, GPU nodes whose torch sees no GPU."""
    connect(address)
    check_paths_reach_every_node(output, manifest["uri"].to_pylist(), shared_dirs)
    check_gpus_visible(device)


def index(manifest: str, output: str, model: str = "clip-meanp", checkpoint: str | None = None,
          workers: int = 1, batch_size: int = DEFAULT_BATCH_SIZE, segment_seconds: float | None = None,
          seek: str = "exact", address: str | None = None, rows_per_part: int = ROWS_PER_PART,
          device: str = "auto", shared_dirs: list[str] | None = None, retry_errors: bool = False) -> dict:
    """Index a manifest into OUTPUT/videos and OUTPUT/captions; returns the run's stats.

    `device`: "auto" encodes on the GPUs Ray assigns (a GPU node whose torch sees none is refused),
    "cpu" in fp32 on CPU wherever the actors land. `shared_dirs`: local directories every node
    mounts; a local --output or video path elsewhere is refused on a multi-node cluster.
    `retry_errors`: re-read videos whose rows are permanent errors (transient ones always are).

    Raises ManifestError / ModelConfigError / CheckpointError / ClusterError / UserError before any
    work when the job cannot run; a bad video is an 'error' row, never an exception.
    """
    if workers < 1 or batch_size < 1:
        raise UserError("--workers and --batch-size must be at least 1")
    if segment_seconds is not None and segment_seconds <= 0:
        raise UserError("--segment-seconds must be positive")
    if device not in DEVICES:
        raise UserError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    shared_dirs = list(shared_dirs or [])
    timings, started = {}, time.perf_counter()
    table = read_manifest(manifest)
    # The seek mode is part of the model's sampling, so of its fingerprint: rows of the two modes
    # never mix in one dataset. The default stays out of the spec (specs recorded before it stay valid).
    overrides = {"sampling": {"seek": seek}} if seek != "exact" else {}
    encoder = load_model(model, checkpoint=checkpoint, device="cpu", **overrides)
    on_cluster = cluster_address(address) is not None or ray.is_initialized()
    if on_cluster:  # checked before planning: a refused job leaves no trace
        connect_checked(address, output, table, shared_dirs, device)
    run_id = new_run_id()
    videos_dir, captions_dir = f"{output.rstrip('/')}/{VIDEOS}", f"{output.rstrip('/')}/{CAPTIONS}"
    for directory in (videos_dir, captions_dir):
        remove_temp_files(directory)
    plan = make_plan(table, videos_dir, captions_dir, encoder.fingerprint, segment_seconds, retry_errors)
    timings["plan_s"] = time.perf_counter() - started

    model_record = _model_record(encoder)
    metadata = table.drop_columns(["captions"])
    schema = video_schema(encoder.dim, metadata.schema, model_record)
    video_stats, caption_stats = {}, {}
    actor_device = None if device == "auto" else device
    if (plan.encode.num_rows or plan.captions.num_rows) and not on_cluster:
        connect_checked(address, output, table, shared_dirs, device)
    step = time.perf_counter()
    if plan.encode.num_rows:
        video_stats = encode_videos(plan, metadata, schema, videos_dir, encoder, run_id, workers, batch_size,
                                    segment_seconds, rows_per_part, actor_device)
    timings["videos_s"] = time.perf_counter() - step
    step = time.perf_counter()
    refreshed = refresh_metadata(plan, metadata, schema, videos_dir, run_id, rows_per_part) if len(plan.refresh) else 0
    if plan.captions.num_rows:
        caption_stats = encode_captions(plan, caption_schema(encoder.dim, model_record), captions_dir, encoder,
                                        run_id, workers, rows_per_part, actor_device)
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
                         "segment_seconds": segment_seconds, "seek": seek, "rows_per_part": rows_per_part,
                         "device": device, "shared_dirs": shared_dirs, "retry_errors": retry_errors}}
    stats["stats_file"] = write_run_record(output, run_id, record)
    return stats


def _nodes(video_stats: dict) -> dict:
    """{"decoded_on": {node_id: rows}, "encoded_on": {...}}: where the work ran."""
    return {step: {key.split(":", 1)[1]: n for key, n in video_stats.items() if key.startswith(f"{step}:")}
            for step in NODE_COLUMNS.values()}


def _run_stats(plan: Plan, video_stats: dict, caption_stats: dict, refreshed: int, timings: dict) -> dict:
    seconds = timings["videos_s"] or float("nan")
    encoded = plan.encode.num_rows
    return {
        "videos": encoded + plan.reused + len(plan.refresh),
        "encoded": encoded,
        "added": encoded - plan.changed,
        "changed": plan.changed,
        "errors_retried": plan.errors_retried,
        "deleted": len(plan.deleted),
        "reused": plan.reused,
        "metadata_updated": len(plan.refresh),
        "rows_written": video_stats.get("rows", 0) + refreshed,
        "rows_ok": video_stats.get("status_ok", 0),
        "rows_error": video_stats.get("status_error", 0),
        "rows_error_transient": video_stats.get("error_transient", 0),
        "captions_encoded": caption_stats.get("rows", 0),
        "captions_reused": plan.captions_reused,
        "frames": video_stats.get("frames", 0),
        "videos_per_s": round(encoded / seconds, 3) if encoded else 0.0,
        "frames_per_s": round(video_stats.get("frames", 0) / seconds, 3) if encoded else 0.0,
        "decode_cpu_s": round(video_stats.get("decode_seconds", 0.0), 3),
        "encode_actor_s": round(video_stats.get("encode_seconds", 0.0), 3),
        "nodes": _nodes(video_stats),
        **{k: round(v, 3) for k, v in timings.items()},
    }

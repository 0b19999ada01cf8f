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
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import ray

from encoders import VideoTextEncoder, create_model
from encoders.config import DEVICES
from errors import UserError
from storage.table.compaction import compact
from storage.table.dataset import TaggedRows, conform, remove_temp_files, write_part
from storage.table.live_rows import rows_of
from storage.table.manifest import read_manifest
from storage.table.runs import new_run_id, write_run_record
from storage.schema import (CAPTION_KEY, CAPTIONS, VIDEO_KEY, VIDEOS, caption_schema, metadata_columns,
                            video_schema)

from .cluster import (check_gpus_visible, check_paths_reach_every_node, cluster_address, connect, embedder_pool,
                      embedder_resources)
from storage.table.index_plan import Plan, make_plan
from .sink import NODE_COLUMNS, ROWS_PER_PART, PartsDatasink
from .workers import CaptionEmbedder, VideoEmbedder, decode_item

logger = logging.getLogger(__name__)

# Videos per decode task. Ray's per-task cost (~0.2 s on a small node) would dominate a task per
# video (measured: 4.7 videos/s with one per task, 7.5 with eight, 2 CPUs, 320x240 clips).
VIDEOS_PER_DECODE_TASK = 8
# Videos per embedder call: 8 x 12 frames = 96 images per forward pass. On CPU, larger batches
# gained nothing (ViT-B/32: 0.54 s/video at 4 vs 0.57 at 1); GPUs want larger ones (--batch-size).
DEFAULT_BATCH_SIZE = 8
# Captions per block: the text tower encodes thousands per second; blocks spread them over the actors.
CAPTIONS_PER_BLOCK = 1024
# Captions per embedder call.
CAPTIONS_PER_BATCH = 256


@dataclass
class IndexRun:
    """What every step of one index run shares."""

    run_id: str
    encoder: VideoTextEncoder  # on CPU in the driver: its spec, sampling and geometry travel to the actors
    metadata: pa.Table  # the manifest's rows without their captions
    videos_dir: str
    captions_dir: str
    workers: int
    rows_per_part: int
    actor_device: str | None  # None: the GPU Ray assigns, if any

    @property
    def model_record(self) -> dict:
        return model_record(self.encoder)

    @property
    def constants(self) -> dict:
        """The run's columns (schema.RUN_COLUMNS), the same on every row it writes."""
        return {"run_id": self.run_id, "model_fingerprint": self.encoder.fingerprint}

    def video_schema(self) -> pa.Schema:
        return video_schema(self.encoder.dim, self.metadata.schema, self.model_record)

    def embedder_options(self) -> dict:
        return embedder_options(self.encoder.spec, self.workers, self.actor_device)


def model_record(encoder: VideoTextEncoder) -> dict:
    """What made the vectors, as each part's footer and each collection's properties record it."""
    return {"spec": encoder.spec, "fingerprint": encoder.fingerprint, "dim": encoder.dim,
            "logit_scale": encoder.logit_scale, "config": encoder.cfg.to_dict()}


def embedder_options(spec: dict, workers: int, device: str | None) -> dict:
    """map_batches options of a pool of `workers` embedder actors, each with the model of `spec`."""
    resources = embedder_resources(workers)
    return {"fn_constructor_kwargs": {"spec": spec, "threads": resources["threads"], "device": device},
            # Ray Data restarts a lost actor (OOM killer, node gone) and redoes its batches.
            "compute": embedder_pool(workers), "num_cpus": resources["num_cpus"], "num_gpus": resources["num_gpus"]}


def blocks(table: pa.Table, rows: int) -> ray.data.Dataset:
    """One Ray Data block per `rows` rows (one task each), straight from Arrow."""
    return ray.data.from_arrow([table.slice(start, rows) for start in range(0, table.num_rows, rows)])


def encode_videos(run: IndexRun, plan: Plan, batch_size: int, segment_seconds: float | None) -> dict:
    """Decode and embed the plan's videos into parts under videos/; the sink's stats."""
    # Ray Data's per-operator reservation would keep half the CPUs for the embedder and writer
    # steps, which need none on CPU nodes: decoding ran at half speed (5.2 vs 3.4 videos/s, 2 CPUs).
    # Memory backpressure still bounds what is in flight.
    ray.data.DataContext.get_current().op_resource_reservation_enabled = False
    sink = PartsDatasink(run.videos_dir, run.video_schema(), VIDEO_KEY, run.constants, manifest=run.metadata,
                         rows_per_part=run.rows_per_part)
    encoder = run.encoder
    (
        blocks(plan.encode, VIDEOS_PER_DECODE_TASK)
        .flat_map(decode_item, num_cpus=1, fn_kwargs={
            "sampling": dataclasses.asdict(encoder.sampling), "image_size": encoder.image_size,
            "max_frames": encoder.num_frames, "segment_seconds": segment_seconds})
        .map_batches(VideoEmbedder, batch_size=batch_size, batch_format="pyarrow",
                     **run.embedder_options())
        .write_datasink(sink)
    )
    return dict(sink.stats)


def encode_captions(run: IndexRun, plan: Plan) -> dict:
    """Embed the plan's captions into parts under captions/; the sink's stats."""
    schema = caption_schema(run.encoder.dim, run.model_record)
    sink = PartsDatasink(run.captions_dir, schema, CAPTION_KEY, run.constants, rows_per_part=run.rows_per_part)
    (
        blocks(plan.captions, CAPTIONS_PER_BLOCK)
        .map_batches(CaptionEmbedder, batch_size=CAPTIONS_PER_BATCH, batch_format="numpy",
                     **run.embedder_options())
        .write_datasink(sink)
    )
    return dict(sink.stats)


def refresh_metadata(run: IndexRun, plan: Plan) -> int:
    """Rewrite the stored rows of videos whose metadata alone changed; no decoding, no encoding.
    Only the parts holding them are read, a batch of rows at a time."""
    refreshed = run.metadata.take(plan.refresh)
    ids = refreshed["video_id"].combine_chunks()
    stored = rows_of(plan.videos_read, plan.refresh_rows, run.videos_dir, VIDEO_KEY)
    schema, written = run.video_schema(), 0
    for batch in stored.batches(stored.schema.names, run.rows_per_part):
        taken = refreshed.take(pc.index_in(batch["video_id"], value_set=ids))
        columns = {name: batch[name] for name in batch.column_names}
        columns.update({name: taken[name] for name in metadata_columns(run.metadata.column_names)})
        columns["run_id"] = pa.array([run.run_id] * batch.num_rows, pa.string())
        write_part(conform(columns, batch.num_rows, schema), run.videos_dir, VIDEO_KEY)
        written += batch.num_rows
    return written


def compact_dataset(run: IndexRun, manifest: pa.Table, plan: Plan) -> tuple[dict, dict[str, TaggedRows | None]]:
    """Drop the rows no reader should see: superseded, deleted, and captions no longer given. Parts
    the plan read are not read again. Returns the stats and each table's small columns after."""
    captioned = manifest.filter(pc.greater(pc.list_value_length(manifest["captions"]), 0))
    videos = compact(run.videos_dir, manifest["video_id"].combine_chunks(), VIDEO_KEY, plan.videos_read)
    captions = compact(run.captions_dir, captioned["video_id"].combine_chunks(), CAPTION_KEY, plan.captions_read)
    return {VIDEOS: videos[0], CAPTIONS: captions[0]}, {VIDEOS: videos[1], CAPTIONS: captions[1]}


def connect_checked(address: str | None, output: str, manifest: pa.Table, shared_dirs: list[str],
                    device: str) -> None:
    """Join Ray and refuse, before any work, what this cluster cannot do: local paths across
    nodes, GPU nodes whose torch sees no GPU."""
    connect(address)
    check_paths_reach_every_node(output, manifest["uri"].to_pylist(), shared_dirs)
    check_gpus_visible(device)


def check_options(workers: int, batch_size: int, segment_seconds: float | None, device: str) -> None:
    if workers < 1 or batch_size < 1:
        raise UserError("--workers and --batch-size must be at least 1")
    if segment_seconds is not None and segment_seconds <= 0:
        raise UserError("--segment-seconds must be positive")
    if device not in DEVICES:
        raise UserError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")


def create_driver_model(model: str, checkpoint: str | None, seek: str) -> VideoTextEncoder:
    """The model on CPU in the driver, fails early on a bad name or checkpoint. The seek mode is part
    of the model's sampling, so of its fingerprint: rows of the two modes never mix in one dataset.
    The default stays out of the spec (specs recorded before it stay valid)."""
    overrides = {"sampling": {"seek": seek}} if seek != "exact" else {}
    return create_model(model, checkpoint=checkpoint, device="cpu", **overrides)


def run_steps(run: IndexRun, plan: Plan, batch_size: int,
              segment_seconds: float | None) -> tuple[dict, dict, int, dict]:
    """Encode what the plan says, refresh metadata, encode captions: (video stats, caption stats,
    rows refreshed, seconds per step)."""
    timings, step = {}, time.perf_counter()
    video_stats = encode_videos(run, plan, batch_size, segment_seconds) if plan.encode.num_rows else {}
    timings["videos_s"] = time.perf_counter() - step
    step = time.perf_counter()
    refreshed = refresh_metadata(run, plan) if len(plan.refresh) else 0
    timings["refresh_s"] = time.perf_counter() - step
    step = time.perf_counter()
    caption_stats = encode_captions(run, plan) if plan.captions.num_rows else {}
    timings["captions_s"] = time.perf_counter() - step
    return video_stats, caption_stats, refreshed, timings


def index(manifest: str, output: str, **options) -> dict:
    """Index a manifest into OUTPUT/videos and OUTPUT/captions; returns the run's stats (see
    run_index for the options)."""
    return run_index(manifest, output, **options)[0]


def run_index(manifest: str, output: str, model: str = "clip-meanp", checkpoint: str | None = None,
              workers: int = 1, batch_size: int = DEFAULT_BATCH_SIZE, segment_seconds: float | None = None,
              seek: str = "exact", address: str | None = None, rows_per_part: int = ROWS_PER_PART,
              device: str = "auto", shared_dirs: list[str] | None = None,
              retry_errors: bool = False) -> tuple[dict, dict[str, TaggedRows | None]]:
    """Index a manifest into OUTPUT/videos and OUTPUT/captions. Returns the run's stats, and each
    table's small columns as the run leaves them (a load that follows need not read them again).

    `device`: "auto" encodes on the GPUs Ray assigns (a GPU node whose torch sees none is refused),
    "cpu" in fp32 on CPU wherever the actors land. `shared_dirs`: local directories every node
    mounts; a local --output or video path elsewhere is refused on a multi-node cluster.
    `retry_errors`: re-read videos whose rows are permanent errors (transient ones always are).

    Raises ManifestError / ModelConfigError / CheckpointError / ClusterError / UserError before any
    work when the job cannot run; a bad video is an 'error' row, never an exception.
    """
    check_options(workers, batch_size, segment_seconds, device)
    shared_dirs, started = list(shared_dirs or []), time.perf_counter()
    table = read_manifest(manifest)
    encoder = create_driver_model(model, checkpoint, seek)
    on_cluster = cluster_address(address) is not None or ray.is_initialized()
    if on_cluster:  # checked before planning: a refused job leaves no trace
        connect_checked(address, output, table, shared_dirs, device)
    root = output.rstrip("/")
    run = IndexRun(new_run_id(), encoder, table.drop_columns(["captions"]), f"{root}/{VIDEOS}", f"{root}/{CAPTIONS}",
                   workers, rows_per_part, None if device == "auto" else device)
    for directory in (run.videos_dir, run.captions_dir):
        remove_temp_files(directory)
    plan = make_plan(table, run.videos_dir, run.captions_dir, encoder.fingerprint, segment_seconds, retry_errors)
    plan_s = time.perf_counter() - started
    if (plan.encode.num_rows or plan.captions.num_rows) and not on_cluster:
        connect_checked(address, output, table, shared_dirs, device)
    video_stats, caption_stats, refreshed, timings = run_steps(run, plan, batch_size, segment_seconds)
    step = time.perf_counter()
    compaction, tables_read = compact_dataset(run, table, plan)
    timings.update(plan_s=plan_s, compact_s=time.perf_counter() - step, total_s=time.perf_counter() - started)

    stats = _run_stats(plan, video_stats, caption_stats, refreshed, timings)
    record = {"run_id": run.run_id, "command": "index", "stats": stats, "compaction": compaction,
              "model": run.model_record,
              "config": {"manifest": str(manifest), "output": output, "workers": workers, "batch_size": batch_size,
                         "segment_seconds": segment_seconds, "seek": seek, "rows_per_part": rows_per_part,
                         "device": device, "shared_dirs": shared_dirs, "retry_errors": retry_errors}}
    stats["stats_file"] = write_run_record(output, run.run_id, record)
    return stats, tables_read


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

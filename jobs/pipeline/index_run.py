"""The index run: manifest -> plan -> decode (CPU tasks) -> CLIP2Video (actor pool) -> Parquet parts,
then metadata refresh and compaction, and a run record. Incremental: videos whose file, model and
sampling are unchanged are not decoded again (storage/table/index_plan.py).
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
from storage.schema import CAPTION_KEY, CAPTIONS, VIDEO_KEY, VIDEOS, caption_schema, video_schema
from storage.table.compaction import compact
from storage.table.dataset import PartRows, remove_temp_files
from storage.table.index_plan import Plan, make_plan, refresh_metadata
from storage.table.manifest import read_manifest
from storage.table.runs import new_run_id, write_run_record

from .cluster import (CAPTIONS_PER_BATCH, CAPTIONS_PER_BLOCK, blocks, check_gpus_visible, check_paths_reach_every_node,
                      cluster_address, connect, embedder_options)
from .options import IndexOptions
from .sink import NODE_COLUMNS, PartsDatasink
from .workers import CaptionEmbedder, VideoEmbedder, decode_item

logger = logging.getLogger(__name__)

# Videos per decode task: Ray's per-task cost would dominate a task per video
# (docs/benchmarks.md, "Why the constants are what they are").
VIDEOS_PER_DECODE_TASK = 8


@dataclass
class IndexRun:
    """What every step of one index run shares."""

    run_id: str
    encoder: VideoTextEncoder  # on CPU in the driver: its spec, sampling and geometry travel to the actors
    metadata: pa.Table  # the manifest's rows without their captions
    videos_dir: str
    captions_dir: str
    options: IndexOptions

    @property
    def constants(self) -> dict:
        """The run's columns (schema.RUN_COLUMNS), the same on every row it writes."""
        return {"run_id": self.run_id, "model_fingerprint": self.encoder.fingerprint}

    def video_schema(self) -> pa.Schema:
        return video_schema(self.encoder.dim, self.metadata.schema, self.encoder.record)

    def embedder_options(self) -> dict:
        device = None if self.options.device == "auto" else self.options.device
        return embedder_options(self.encoder.spec, self.options.workers, device)


def encode_videos(run: IndexRun, plan: Plan, segment_seconds: float | None) -> dict:
    """Decode and embed the plan's videos into parts under videos/; the sink's stats."""
    # Ray Data's per-operator reservation would keep half the CPUs for the embedder and writer
    # steps, which need none on CPU nodes: decoding ran slower (docs/benchmarks.md, "Why the
    # constants are what they are"). Memory backpressure still bounds what is in flight.
    ray.data.DataContext.get_current().op_resource_reservation_enabled = False
    sink = PartsDatasink(run.videos_dir, run.video_schema(), VIDEO_KEY, run.constants, manifest=run.metadata,
                         rows_per_part=run.options.rows_per_part)
    encoder = run.encoder
    (
        blocks(plan.encode, VIDEOS_PER_DECODE_TASK)
        .flat_map(decode_item, num_cpus=1, fn_kwargs={
            "sampling": dataclasses.asdict(encoder.sampling), "image_size": encoder.image_size,
            "max_frames": encoder.num_frames, "segment_seconds": segment_seconds})
        .map_batches(VideoEmbedder, batch_size=run.options.batch_size, batch_format="pyarrow",
                     **run.embedder_options())
        .write_datasink(sink)
    )
    return dict(sink.stats)


def encode_captions(run: IndexRun, plan: Plan) -> dict:
    """Embed the plan's captions into parts under captions/; the sink's stats."""
    schema = caption_schema(run.encoder.dim, run.encoder.record)
    sink = PartsDatasink(run.captions_dir, schema, CAPTION_KEY, run.constants, rows_per_part=run.options.rows_per_part)
    (
        blocks(plan.captions, CAPTIONS_PER_BLOCK)
        .map_batches(CaptionEmbedder, batch_size=CAPTIONS_PER_BATCH, batch_format="numpy",
                     **run.embedder_options())
        .write_datasink(sink)
    )
    return dict(sink.stats)


def compact_dataset(run: IndexRun, manifest: pa.Table, plan: Plan) -> tuple[dict, dict[str, PartRows | None]]:
    """Drop the rows no reader should see: superseded, deleted, and captions no longer given. Parts
    the plan read are not read again. Returns the stats and each table's small columns after."""
    captioned = manifest.filter(pc.greater(pc.list_value_length(manifest["captions"]), 0))
    videos = compact(run.videos_dir, manifest["video_id"].combine_chunks(), VIDEO_KEY, plan.videos_read)
    captions = compact(run.captions_dir, captioned["video_id"].combine_chunks(), CAPTION_KEY, plan.captions_read)
    return {VIDEOS: videos[0], CAPTIONS: captions[0]}, {VIDEOS: videos[1], CAPTIONS: captions[1]}


def connect_checked(options: IndexOptions, output: str, manifest: pa.Table) -> None:
    """Join Ray and refuse, before any work, what this cluster cannot do: local paths across
    nodes, GPU nodes whose torch sees no GPU."""
    connect(options.address)
    check_paths_reach_every_node(output, manifest["uri"].to_pylist(), options.shared_dirs)
    check_gpus_visible(options.device)


def create_driver_model(options: IndexOptions) -> VideoTextEncoder:
    """The model on CPU in the driver, fails early on a bad name or checkpoint. The seek mode is part
    of the model's sampling, so of its fingerprint: rows of the two modes never mix in one dataset.
    The default stays out of the spec (specs recorded before it stay valid)."""
    overrides = {"sampling": {"seek": options.seek}} if options.seek != "exact" else {}
    return create_model(options.model, checkpoint=options.checkpoint, device="cpu", **overrides)


def run_steps(run: IndexRun, plan: Plan) -> tuple[dict, dict, int, dict]:
    """Encode what the plan says, refresh metadata, encode captions: (video stats, caption stats,
    rows refreshed, seconds per step)."""
    timings, step = {}, time.perf_counter()
    video_stats = encode_videos(run, plan, run.options.segment_seconds) if plan.encode.num_rows else {}
    timings["videos_s"] = time.perf_counter() - step
    step = time.perf_counter()
    refreshed = refresh_metadata(plan, run.metadata, run.videos_dir, run.video_schema(), run.run_id,
                                 run.options.rows_per_part) if len(plan.refresh) else 0
    timings["refresh_s"] = time.perf_counter() - step
    step = time.perf_counter()
    caption_stats = encode_captions(run, plan) if plan.captions.num_rows else {}
    timings["captions_s"] = time.perf_counter() - step
    return video_stats, caption_stats, refreshed, timings


def run_index(manifest: str, output: str, options: IndexOptions) -> tuple[dict, dict[str, PartRows | None]]:
    """Index a manifest into OUTPUT/videos and OUTPUT/captions. Returns the run's stats, and each
    table's small columns as the run leaves them (a load that follows need not read them again).

    Raises ManifestError / ModelConfigError / CheckpointError / ClusterError / UserError before any
    work when the job cannot run; a bad video is an 'error' row, never an exception.
    """
    started = time.perf_counter()
    table = read_manifest(manifest)
    encoder = create_driver_model(options)
    on_cluster = cluster_address(options.address) is not None or ray.is_initialized()
    if on_cluster:  # checked before planning: a refused job leaves no trace
        connect_checked(options, output, table)
    root = output.rstrip("/")
    run = IndexRun(new_run_id(), encoder, table.drop_columns(["captions"]), f"{root}/{VIDEOS}", f"{root}/{CAPTIONS}",
                   options)
    for directory in (run.videos_dir, run.captions_dir):
        remove_temp_files(directory)
    plan = make_plan(table, run.videos_dir, run.captions_dir, encoder.fingerprint, options.segment_seconds,
                     options.retry_errors)
    plan_s = time.perf_counter() - started
    if (plan.encode.num_rows or plan.captions.num_rows) and not on_cluster:
        connect_checked(options, output, table)
    video_stats, caption_stats, refreshed, timings = run_steps(run, plan)
    step = time.perf_counter()
    compaction, tables_read = compact_dataset(run, table, plan)
    timings.update(plan_s=plan_s, compact_s=time.perf_counter() - step, total_s=time.perf_counter() - started)

    stats = _run_stats(plan, video_stats, caption_stats, refreshed, timings)
    record = {"run_id": run.run_id, "command": "index", "stats": stats, "compaction": compaction,
              "model": encoder.record, "config": {"manifest": str(manifest), "output": output, **options.model_dump()}}
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

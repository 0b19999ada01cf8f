"""The train run: captioned videos -> CLIP2Video (or the meanP head) trained on Ray Train.

Each video is decoded once into a few candidate frames per slot (kept in Ray's object store); every epoch
draws one per slot (jitter) and one caption per video. The loss is the paper's: symmetric cross-entropy
over the global and the TAB similarities, weighted w and 1 - w. After each epoch OUTPUT gets
pytorch_model.bin.<epoch> (official key names; create_model('clip2video', checkpoint=...) reads it),
loss.csv and loss.png; stats.json at the end. A stopped run started again with the same OUTPUT resumes
from its last epoch (Ray Train's checkpoints under OUTPUT/ray).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import ray.train
import torch
import torch.nn.functional as F
from ray.data.expressions import col
from ray.train import CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, get_device, prepare_model
from ray.train.v2.api.callback import UserCallback
from torch import nn
from torch.distributed.nn.functional import all_gather

from encoders import SamplingCfg, VideoTextEncoder, create_model, list_models, tokenize
from encoders.checkpoint import from_official_keys, load_strict, read_state_dict, save_official
from encoders.preprocess import stack_clips
from encoders.video import VideoDecodeError, decode_video
from errors import UserError
from storage.table.atomic import publish_in
from storage.table.manifest import read_manifest

from jobs.log import configure_logging
from storage.table.training import LOSS_CSV, LOSS_PNG, STATS_JSON, epoch_means, plot_loss, read_loss_csv, write_loss_csv

from .cluster import connect
from .index_run import VIDEOS_PER_DECODE_TASK
from .options import TrainOptions

logger = logging.getLogger(__name__)

# Candidate frames decoded per frame slot; each epoch draws one. Bounds the cache at 4x what
# inference decodes, however long a video is (synth clips have 2 grid frames per slot).
JITTER_CANDIDATES = 4
# Videos held for the per-epoch local shuffle (a whole small dataset; 256 x 48 x 224 px frames ~ 1.8 GB).
SHUFFLE_BUFFER = 256
WARMUP_FRACTION = 0.1  # the paper's warmup_proportion: linear warm-up, then cosine decay
MAX_LOGIT_SCALE = math.log(100)  # CLIP clamps its learned temperature so logits stay within 100
LOG_EVERY_STEPS = 10
RAY_RUN = "ray"  # Ray Train's run directory under OUTPUT: its checkpoints make a rerun resume
TRAIN_STATE = "train_state.pt"
MAX_ERRORS_RECORDED = 100


def create_initial_model(init: str, head: str | None = None) -> VideoTextEncoder:
    """init: a registered model ('tiny', 'demo', 'clip-meanp'...) or an official checkpoint path.
    head: the head to train on its CLIP when it differs ('meanp' or 'clip2video'; new modules random)."""
    overrides = {"head": head} if head else {}
    if init in list_models():
        return create_model(init, device="cpu", **overrides)
    return create_model("clip-meanp" if head == "meanp" else "clip2video", checkpoint=init, device="cpu")


def training_rows(manifest: str) -> tuple[list[dict], int]:
    """Manifest rows that have captions (uri, video_id, captions), and how many had none."""
    rows = read_manifest(manifest).select(["uri", "video_id", "captions"]).to_pylist()
    captioned = [row for row in rows if row["captions"]]
    return captioned, len(rows) - len(captioned)


def decode_candidates(row: dict, sampling: dict, image_size: int) -> dict:
    """A manifest row -> its captions and uint8 jitter candidates (slots * JITTER_CANDIDATES, 3, S, S),
    or the reason it cannot be used (then no frames)."""
    try:
        _, [segment] = decode_video(row["uri"], SamplingCfg(**sampling), image_size, per_slot=JITTER_CANDIDATES)
        frames, error = segment.frames.numpy(), ""
    except VideoDecodeError as e:
        frames, error = np.zeros((0, 3, image_size, image_size), np.uint8), str(e)
    return {"video_id": row["video_id"], "captions": list(row["captions"]), "frames": frames, "error": error}


def decode_dataset(rows: list[dict], sampling: SamplingCfg, image_size: int) -> tuple[ray.data.Dataset, list]:
    """Decode every video once into Ray's object store: (usable rows, [{video_id, error}])."""
    decoded = (
        ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / VIDEOS_PER_DECODE_TASK))
        .map(decode_candidates, fn_kwargs={"sampling": dataclasses.asdict(sampling), "image_size": image_size})
        .materialize()
    )
    errors = decoded.filter(expr=col("error") != "").select_columns(["video_id", "error"]).take_all()
    # Materialized, so epochs read the frames back instead of decoding (or filtering) again.
    return decoded.filter(expr=col("error") == "").materialize(), errors


def jitter(candidates: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """(slots * JITTER_CANDIDATES, 3, S, S) -> one random candidate per slot, (slots, 3, S, S)."""
    per_slot = candidates.reshape(-1, JITTER_CANDIDATES, *candidates.shape[1:])
    picks = rng.integers(JITTER_CANDIDATES, size=len(per_slot))
    return torch.from_numpy(per_slot[np.arange(len(per_slot)), picks])


def sample_batch(batch: dict[str, np.ndarray], rng: np.random.Generator, encoder, device: torch.device):
    """A batch of decoded videos -> model inputs: jittered frames (B, T, 3, S, S) and mask (B, T),
    one random caption per video as tokens and mask (B, L)."""
    clips = [jitter(candidates, rng) for candidates in batch["frames"]]
    captions = [str(rng.choice(list(options))) for options in batch["captions"]]
    frames, mask = stack_clips(clips, encoder.num_frames, encoder.preprocess, device)
    input_ids, attention_mask = tokenize(captions, encoder.cfg.max_words)
    return frames, mask, input_ids.to(device), attention_mask.to(device)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every worker's rows, gradients flowing back to each (the paper's allgather): with several
    workers each loss sees the global batch as negatives."""
    if ray.train.get_context().get_world_size() == 1:
        return x
    return torch.cat(all_gather(x))


def symmetric_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """(B, B) caption x video logits, pairs on the diagonal: mean of text->video and video->text CE."""
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class RetrievalLoss(nn.Module):
    """The paper's objective around a model; forward returns the loss, so DDP can wrap it.

    For CLIP2Video: w * CE(global similarities) + (1 - w) * CE(TAB similarities), both symmetric,
    both scaled by CLIP's learned logit_scale; for meanP the one similarity.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, frames, mask, input_ids, attention_mask) -> torch.Tensor:
        videos = self.model.video_branches(frames, mask)
        texts = self.model.text_branches(input_ids, attention_mask)
        scale = self.model.clip.logit_scale.exp()
        return sum(
            weight * symmetric_cross_entropy(scale * gather_rows(text) @ gather_rows(video).T)
            for weight, text, video in zip(self.model.branch_weights, texts, videos)
        )


def build_optimizer(model: nn.Module, lr: float, clip_lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; CLIP's own weights may take a smaller rate (the paper: 1e-7 for CLIP, 1e-4 for the rest);
    no decay on gains, biases and the logit scale (CLIP's practice)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        groups.setdefault((name.startswith("clip."), param.ndim >= 2), []).append(param)
    return torch.optim.AdamW([
        {"params": params, "lr": clip_lr if in_clip else lr, "weight_decay": weight_decay if decays else 0.0}
        for (in_clip, decays), params in groups.items()
    ])


def build_schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    warmup = max(1, int(WARMUP_FRACTION * total_steps))
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [
        torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup),
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup)),
    ], milestones=[warmup])


def restore(checkpoint, model: nn.Module, optimizer, schedule) -> tuple[int, list[dict]]:
    """From Ray Train's latest checkpoint (a resumed run): the epoch to start at and the loss history."""
    if checkpoint is None:
        return 0, []
    with checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, TRAIN_STATE), map_location="cpu", weights_only=True)
        weights = os.path.join(directory, f"pytorch_model.bin.{state['epoch']}")
        load_strict(model, from_official_keys(read_state_dict(weights)), source=weights)
        history = read_loss_csv(os.path.join(directory, LOSS_CSV))
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    logger.info("resuming after epoch %d", state["epoch"])
    return state["epoch"] + 1, history


def report_epoch(epoch: int, model: nn.Module, optimizer, schedule, history: list[dict],
                 with_checkpoint: bool) -> None:
    """Every worker reports; rank 0 adds the checkpoint: official weights, optimizer state, loss history."""
    losses = [row["loss"] for row in history if row["epoch"] == epoch]
    metrics = {"epoch": epoch, "loss": float(np.mean(losses)), "steps": len(history)}
    logger.info("epoch %d done: mean loss %.4f", epoch, metrics["loss"])
    if not with_checkpoint or ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        save_official(model.state_dict(), os.path.join(directory, f"pytorch_model.bin.{epoch}"))
        torch.save({"epoch": epoch, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()},
                   os.path.join(directory, TRAIN_STATE))
        write_loss_csv(os.path.join(directory, LOSS_CSV), history)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def optimize(loss: torch.Tensor, model: nn.Module, optimizer, schedule) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    with torch.no_grad():
        model.clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)


def train_loop(config: dict) -> None:
    """A Ray Train worker: build the model, resume if Ray Train has a checkpoint, train, report each epoch."""
    configure_logging()
    torch.manual_seed(config["seed"])  # the same new modules in every worker
    encoder = create_initial_model(config["init"], config["head"])
    model = encoder.module.train()
    loss_fn = prepare_model(RetrievalLoss(model))  # to the worker's device; DDP if several
    device = get_device()
    optimizer = build_optimizer(model, config["lr"], config["clip_lr"], config["weight_decay"])
    schedule = build_schedule(optimizer, config["epochs"] * config["steps_per_epoch"])
    start_epoch, history = restore(ray.train.get_checkpoint(), model, optimizer, schedule)
    context = ray.train.get_context()
    shard = ray.train.get_dataset_shard("train")
    for epoch in range(start_epoch, config["epochs"]):
        rng = np.random.default_rng([config["seed"], context.get_world_rank(), epoch])
        started = time.perf_counter()
        batches = shard.iter_batches(batch_size=config["batch_size"], batch_format="numpy", drop_last=True,
                                     local_shuffle_buffer_size=SHUFFLE_BUFFER,
                                     local_shuffle_seed=config["seed"] + epoch)
        for step, batch in enumerate(batches, 1):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = loss_fn(*sample_batch(batch, rng, encoder, device))
            optimize(loss, model, optimizer, schedule)
            history.append({"epoch": epoch, "step": len(history) + 1, "loss": loss.item(),
                            "lr": max(group["lr"] for group in optimizer.param_groups),
                            "logit_scale": model.clip.logit_scale.exp().item()})
            if step % LOG_EVERY_STEPS == 0 or step == config["steps_per_epoch"]:
                rate = step * config["batch_size"] / (time.perf_counter() - started)
                logger.info("epoch %d step %d/%d loss %.4f (%.1f videos/s)", epoch, step,
                            config["steps_per_epoch"], loss.item(), rate)
        last = epoch + 1 == config["epochs"]
        report_epoch(epoch, model, optimizer, schedule, history,
                     with_checkpoint=last or (epoch + 1) % config["checkpoint_every"] == 0)


class EpochRecorder(UserCallback):
    """On Ray Train's controller, after it has registered an epoch's checkpoint: copy the official
    weights and loss.csv to OUTPUT and draw loss.png. So every file OUTPUT shows is resumable."""

    def __init__(self, output: str):
        self.output = output

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        if checkpoint is None:
            return
        weights = f"pytorch_model.bin.{metrics[0]['epoch']}"
        with checkpoint.as_directory() as directory, tempfile.TemporaryDirectory() as scratch:
            plot_loss(read_loss_csv(os.path.join(directory, LOSS_CSV)), os.path.join(scratch, LOSS_PNG))
            # The weights last: once OUTPUT shows an epoch's checkpoint, its loss files are there too.
            publish_in(self.output, LOSS_CSV, Path(directory, LOSS_CSV))
            publish_in(self.output, LOSS_PNG, Path(scratch, LOSS_PNG))
            publish_in(self.output, weights, Path(directory, weights))


def scaling(workers: int, use_gpu: bool) -> ScalingConfig:
    """One GPU per worker; on CPUs each worker takes an equal share of the cluster (at most a node),
    which Ray turns into the worker's torch threads."""
    if use_gpu:
        return ScalingConfig(num_workers=workers, use_gpu=True)
    largest_node = max(node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"])
    cpus = max(1, min(int(ray.cluster_resources().get("CPU", 1)) // workers, int(largest_node)))
    return ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": cpus})


def run_train(manifest: str, output: str, options: TrainOptions) -> dict:
    """Train on a captioned manifest (Parquet, CSV, JSONL with uri, video_id, captions; a directory or
    glob; videos without captions are skipped) into OUTPUT (a directory or fsspec URL: shared storage
    on a multi-node cluster); resume when OUTPUT holds a stopped run. Returns the stats also written
    to OUTPUT/stats.json."""
    init, head, workers, use_gpu = options.init, options.head, options.workers, options.use_gpu
    batch_size, lr = options.batch_size, options.lr
    started = time.perf_counter()
    encoder = create_initial_model(init, head)  # fails early on a bad init; the workers load their own
    rows, without_captions = training_rows(manifest)
    connect(options.address)
    decoded, errors = decode_dataset(rows, encoder.sampling, encoder.image_size)
    videos = decoded.count()
    if videos < 2 * workers:
        raise UserError(f"{manifest}: {videos} usable captioned videos; training needs at least {2 * workers}")
    batch_size = min(batch_size, videos // workers)
    decoded_at = time.perf_counter()
    config = {**options.model_dump(exclude={"address"}), "manifest": manifest, "batch_size": batch_size,
              "clip_lr": lr if options.clip_lr is None else options.clip_lr,
              "steps_per_epoch": videos // workers // batch_size}
    storage = output if "://" in output else os.path.abspath(output)
    earlier = checkpointed_history(f"{storage}/{RAY_RUN}")
    trainer = TorchTrainer(
        train_loop, train_loop_config=config, datasets={"train": decoded}, scaling_config=scaling(workers, use_gpu),
        run_config=RunConfig(name=RAY_RUN, storage_path=storage, checkpoint_config=CheckpointConfig(num_to_keep=2),
                             callbacks=[EpochRecorder(output)]),
    )
    history = checkpointed_history(trainer.fit().path)
    stats = run_stats(history, earlier, config, videos, errors, without_captions, output,
                      {"decode": decoded_at - started, "train": time.perf_counter() - decoded_at})
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, STATS_JSON).write_text(json.dumps(stats, indent=2))
        publish_in(output, STATS_JSON, Path(scratch, STATS_JSON))
    logger.info("train: %s", stats)
    return stats


def checkpointed_history(run: str) -> list[dict]:
    """The loss history in the latest checkpoint of a Ray Train run directory ([] when there is none)."""
    try:
        checkpoint = ray.train.Result.from_path(run).checkpoint
    except RuntimeError:  # no run there yet
        return []
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as directory:
        return read_loss_csv(os.path.join(directory, LOSS_CSV))


def run_stats(history: list[dict], earlier: list[dict], config: dict, videos: int, errors: list,
              without_captions: int, output: str, seconds: dict) -> dict:
    """earlier: the history this run resumed from."""
    return {
        "output": output, "config": config, "videos": videos, "videos_without_captions": without_captions,
        "decode_errors": len(errors), "errors": errors[:MAX_ERRORS_RECORDED],
        "epochs": history[-1]["epoch"] + 1, "steps": len(history), "epoch_loss": epoch_means(history),
        "resumed_at_epoch": earlier[-1]["epoch"] + 1 if earlier else 0,
        "checkpoint": f"{output}/pytorch_model.bin.{history[-1]['epoch']}",
        "seconds": {**seconds, "total": sum(seconds.values())},
        # Ray Train's start-up included, as a user's run has it.
        "videos_per_second": (len(history) - len(earlier)) * config["batch_size"] * config["workers"]
        / seconds["train"],
    }

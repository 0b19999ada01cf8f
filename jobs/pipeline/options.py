"""The options of the Ray runs, declared once: the CLI (`index`, `nightly`, `texts`, `tag`,
`duplicates`) and the run functions read them. Imports no Ray: the command line builds its flags
from these."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from encoders.config import Device, Head, SeekMode
from storage.options import Options, cli
from storage.schema import MAX_LIST
from storage.table.dataset import ROWS_PER_PART

DuplicatesMethod = Literal["exact", "ivf"]


def address_field():
    """Where the work runs: a local Ray by default, a cluster by --address or RAY_ADDRESS (`ray job submit`)."""
    return Field(None, description="Ray cluster address; none: a local Ray", json_schema_extra=cli(env="RAY_ADDRESS"))


def device_field():
    return Field("auto", description="auto: the GPUs Ray assigns (a GPU node whose torch sees none is refused); "
                 "cpu: fp32 on CPU wherever the embedder actors land")


class IndexOptions(Options):
    """How `vidx index` (and the nightly's index step) encodes a manifest."""

    model: str = Field("clip-meanp", description="clip2video (needs --checkpoint), clip-meanp, tiny, demo")
    checkpoint: str | None = Field(None, description="official CLIP2Video checkpoint (pytorch_model.bin.N)")
    workers: int = Field(1, ge=1, description="embedder actors, each with one model (one GPU each on GPU clusters)")
    # 8 videos x 12 frames = 96 images per forward pass. On CPU, larger batches gained nothing
    # (docs/benchmarks.md, "Why the constants are what they are"); GPUs want larger ones.
    batch_size: int = Field(8, ge=1, description="videos per encoder call")
    segment_seconds: float | None = Field(None, gt=0, description="one row per segment of this length")
    seek: SeekMode = Field(
        "exact", description="exact: the paper's frame times; keyframe: the nearest keyframes, far less decoding "
                             "on long GOPs, less accurate (docs/decoding.md)")
    address: str | None = address_field()
    # A crash loses at most this much finished work per writer.
    rows_per_part: int = Field(ROWS_PER_PART, ge=1, description="rows per Parquet part")
    device: Device = device_field()
    shared_dirs: list[str] = Field(default_factory=list, description="a local directory every node mounts at the same "
                                   "path: --output and videos under it are allowed on a multi-node cluster",
                                   json_schema_extra=cli(flag="--shared-dir", metavar="DIR"))
    retry_errors: bool = Field(False, description="read again videos whose rows are permanent errors (transient "
                                                  "ones always are)")


class CorpusOptions(Options):
    """How `vidx texts` encodes a corpus."""

    name: str | None = Field(None, description="the corpus' name: its collection and tag column (default: the "
                                               "file's name)")
    model: str | None = Field(None, description="default: the indexed videos' model (another one is refused)")
    checkpoint: str | None = Field(None, description="with --model clip2video: the official checkpoint")
    workers: int = Field(1, ge=1, description="encoder actors")
    device: Device = device_field()
    address: str | None = address_field()


class TagOptions(Options):
    """How `vidx tag` chooses each video's texts."""

    top_k: int = Field(5, ge=1, le=MAX_LIST, description="texts per video")
    min_score: float | None = Field(None, description="keep only texts scoring at least this (cosine similarity)")
    per_segment: bool = Field(False, description="tag each segment, not each video (its best segment)")
    address: str | None = address_field()


class TrainOptions(Options):
    """How `vidx train` trains."""

    init: str = Field("tiny", description="a model name (tiny, demo, clip-meanp...) or an official checkpoint")
    head: Head | None = Field(None, description="train this head on init's CLIP (default: init's)")
    epochs: int = Field(10, ge=1, description="epochs")
    # A contrastive batch needs two videos at least.
    batch_size: int = Field(32, ge=2, description="videos per step and worker (the contrastive batch)")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    clip_lr: float | None = Field(None, gt=0, description="learning rate of CLIP's own weights (default: --lr)")
    weight_decay: float = Field(0.2, ge=0, description="AdamW's weight decay")
    seed: int = Field(0, description="random seed")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints (resume points)")
    workers: int = Field(1, ge=1, description="Ray Train workers")
    use_gpu: bool = Field(False, description="one GPU per worker, bf16 autocast")
    address: str | None = address_field()


class DuplicatesOptions(Options):
    """How `vidx duplicates` finds the pairs of near-duplicate videos."""

    threshold: float = Field(..., gt=0, le=1, description="keep pairs of videos scoring at least this: the inner "
                             "product (cosine similarity) of their best-matching rows (docs/duplicates.md)")
    # ivf, and 8 probes: chosen on bench/duplicates.py (docs/benchmarks.md, "Near-duplicates").
    method: DuplicatesMethod = Field("ivf", description="exact: every row against every row, by blocked matrix "
                                     "products; ivf: each row against the rows of its --probes nearest cells of a "
                                     "k-means partition (faiss): far faster, may miss a pair (docs/duplicates.md)")
    probes: int = Field(8, ge=1, description="with --method ivf: the cells each row is compared in; more find more "
                                             "pairs, slower")
    address: str | None = address_field()

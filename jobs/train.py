"""fine-tune CLIP2Video (or meanP) on captioned videos with Ray Train; checkpoints in the official format.

Each video is decoded once into a few candidate frames per slot; every epoch draws one per slot
(jitter) and one caption per video. The loss is the paper's. After each epoch OUTPUT gets
pytorch_model.bin.<epoch>, loss.csv and loss.png; stats.json at the end. A stopped run started
again with the same OUTPUT resumes from its last epoch (docs/training.md).
"""

from __future__ import annotations

from pydantic import Field

from .pipeline.options import TrainOptions


class Arguments(TrainOptions):
    manifest: str = Field(..., description="Parquet, CSV or JSONL with uri, video_id, captions")
    output: str = Field(..., description="checkpoints (official format), loss.csv, loss.png, stats.json")


def train(manifest: str, output: str, **options) -> dict:
    """Train on a captioned manifest into OUTPUT; the run's stats. `options`: TrainOptions'."""
    from .pipeline.train_run import run_train

    return run_train(manifest, output, TrainOptions.of(**options))


def run(arguments: Arguments) -> dict:
    return train(**arguments.model_dump(exclude_unset=True))

"""write procedural sample videos (coloured shapes moving) with captions and a manifest."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from storage.options import Options


class Arguments(Options):
    out: str = Field(..., description="directory of the videos and their manifest.jsonl")
    n: int = Field(16, ge=1, description="number of sample videos")
    seed: int = Field(0, description="random seed: the same seed makes the same videos")
    gop: int | None = Field(None, ge=1, description="keyframe interval in frames (default: x264's, one per clip)")


def synth(out: str | Path, **options) -> Path:
    """Write sample videos and their manifest under `out`; the manifest's path."""
    from encoders.synth import write_samples

    settings = Arguments.of(out=str(out), **options)
    return write_samples(settings.out, n=settings.n, seed=settings.seed, gop=settings.gop)


def run(arguments: Arguments) -> str:
    return str(synth(**arguments.model_dump()))

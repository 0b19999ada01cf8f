"""manifest -> decode -> encode -> Parquet embeddings, on Ray; incremental: unchanged videos are not decoded again."""

from __future__ import annotations

from pydantic import Field

from .pipeline.options import IndexOptions


class Arguments(IndexOptions):
    manifest: str = Field(..., description="Parquet, CSV or JSONL manifest, or a directory / glob of videos")
    output: str = Field(..., description="dataset directory (local or fsspec URL)")


def index(manifest: str, output: str, **options) -> dict:
    """Index a manifest into OUTPUT/videos and OUTPUT/captions; the run's stats. `options`: IndexOptions'."""
    from .pipeline.index_run import run_index

    return run_index(manifest, output, IndexOptions.of(**options))[0]


def run(arguments: Arguments) -> dict:
    return index(**arguments.model_dump(exclude_unset=True))

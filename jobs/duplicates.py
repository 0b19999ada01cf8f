"""near-duplicates: every pair of videos at least as similar as --threshold, and their groups -> Parquet, on Ray."""

from __future__ import annotations

from pydantic import Field

from .pipeline.options import DuplicatesOptions


class Arguments(DuplicatesOptions):
    embeddings: str = Field(..., description="an index --output directory")


def duplicates(embeddings: str, **options) -> dict:
    """Find every pair of videos of the index at EMBEDDINGS scoring at least `threshold`, and the
    groups they join videos into, under EMBEDDINGS/duplicates; the run's stats. `options`:
    DuplicatesOptions'."""
    from .pipeline.duplicates_run import run_duplicates

    return run_duplicates(embeddings, DuplicatesOptions.of(**options))


def run(arguments: Arguments) -> dict:
    return duplicates(**arguments.model_dump(exclude_unset=True))

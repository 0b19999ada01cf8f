"""zero-shot tagging: every video's best texts of a corpus -> Parquet, on Ray; served as a list column by `vidx load`."""

from __future__ import annotations

from pydantic import Field

from .pipeline.options import TagOptions


class Arguments(TagOptions):
    embeddings: str = Field(..., description="an index --output directory")
    texts: str = Field(..., description="a corpus NAME (vidx texts) or its directory")


def tag(embeddings: str, texts: str, **options) -> dict:
    """Tag every video of the index at EMBEDDINGS with its best texts of corpus `texts`; the run's
    stats. `options`: TagOptions'."""
    from .pipeline.tag_run import run_tags

    return run_tags(embeddings, texts, TagOptions.of(**options))


def run(arguments: Arguments) -> dict:
    return tag(**arguments.model_dump(exclude_unset=True))

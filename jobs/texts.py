"""a text corpus (tags, a taxonomy, sentences) -> the index's text tower -> Parquet, on Ray; served by `vidx load`."""

from __future__ import annotations

from pydantic import Field

from .pipeline.options import CorpusOptions


class Arguments(CorpusOptions):
    input: str = Field(..., description=".txt (one text per line), or .parquet/.csv/.jsonl with a text column, "
                                        "optional text_id and metadata columns")
    output: str = Field(..., description="the index's --output directory")


def texts(input: str, output: str, **options) -> dict:
    """Encode a corpus into OUTPUT/texts/NAME; the run's stats. `options`: CorpusOptions'."""
    from .pipeline.corpus_run import run_texts

    return run_texts(input, output, CorpusOptions.of(**options))


def run(arguments: Arguments) -> dict:
    return texts(**arguments.model_dump(exclude_unset=True))

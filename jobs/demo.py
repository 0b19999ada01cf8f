"""encode sample videos and answer a text query, offline: what `make demo` runs.

Sample videos -> index on a local Ray -> load into milvus-lite -> a text search and two SQL-like
queries. The default model, 'demo', is a small CLIP2Video shipped with the package and trained on
such sample videos (never on the ones the demo makes: their seed was not used in training).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field

from storage.options import Options

logger = logging.getLogger(__name__)


class Arguments(Options):
    out: str = Field("vidx-demo", description="working directory for the sample videos, the index and the database")
    model: str = Field("demo", description="model name (demo: trained on sample videos)")
    query: str = Field("a red circle moves to the left", description="the text to search for")
    n: int = Field(12, ge=1, description="number of sample videos")
    k: int = Field(5, ge=1, description="matches to show", json_schema_extra={"flag": "-k"})
    seed: int = Field(0, description="the sample videos' seed")


def demo(**options) -> list[dict]:
    """Index n sample videos, serve them from OUT/vidx.db, and return the top-k for `query` (printed)."""
    from encoders.recorded import RecordedModels
    from encoders.synth import write_samples
    from storage.milvus.publish import publish_index, read_index
    from storage.milvus.store import VectorStore
    from storage.query.engine import Engine
    from storage.query.formats import formatted, hit_lines
    from storage.query.questions import Search

    from .pipeline.index_run import run_index
    from .pipeline.options import IndexOptions

    settings = Arguments.of(**options)
    out = Path(settings.out)
    manifest = write_samples(out / "samples", n=settings.n, seed=settings.seed)
    output, db = str(out / "index"), str(out / "vidx.db")
    logger.info("index: %s", run_index(str(manifest), output, IndexOptions(model=settings.model))[0])
    index = read_index(output)
    with VectorStore(db) as store:
        logger.info("load: %s", publish_index(store, index))
        if settings.model == "tiny":
            logger.warning("model 'tiny' has random weights: the ranking below is meaningless")
        engine = Engine(store, RecordedModels())
        hits = engine.search(Search(text=settings.query, k=settings.k))
        print(f"query: {settings.query!r}  (model {settings.model}, {settings.n} videos indexed in {output}, "
              f"served from {db})")
        print(hit_lines(hits))
        for sql in (f"SELECT video_id, colour, shape, direction, score FROM videos WHERE direction IN ('left', 'right') "
                    f"ORDER BY similarity(TEXT({settings.query!r})) DESC LIMIT 3",
                    f"SELECT direction, count(*) AS videos, max(similarity(TEXT({settings.query!r}))) AS best "
                    "FROM videos GROUP BY direction ORDER BY best DESC"):
            print(f"sql: {sql}")
            print(formatted(engine.query(sql), "table").decode(), end="")
    print(f"search page: vidx serve --db {db}   then open http://127.0.0.1:8000/")
    return hits


def run(arguments: Arguments) -> None:
    demo(**arguments.model_dump())

"""The embedded demo: sample videos -> index on a local Ray -> load into milvus-lite -> a text query
and a SQL-like query.

Usage: python -m jobs demo [--out DIR] [--model demo] [--query TEXT]
The default model, 'demo', is a small CLIP2Video shipped with the package and trained on such sample
videos (never on the ones the demo makes: their seed was not used in training).
"""

from __future__ import annotations

import logging
from pathlib import Path

from .index import index
from .load import load
from .query import formatted, query_table
from .search import format_table, search
from .synth import synth

logger = logging.getLogger(__name__)


def demo(out: str = "vidx-demo", model: str = "demo", query: str = "a red circle moves to the left",
         n: int = 12, k: int = 5, seed: int = 0) -> list[dict]:
    """Index n sample videos, serve them from OUT/vidx.db, and return the top-k for `query` (printed)."""
    manifest = synth(Path(out) / "samples", n=n, seed=seed)
    output, db = str(Path(out) / "index"), str(Path(out) / "vidx.db")
    logger.info("index: %s", index(str(manifest), output, model=model))
    logger.info("load: %s", load(output, db))
    if model == "tiny":
        logger.warning("model 'tiny' has random weights: the ranking below is meaningless")
    hits = search(db, text=query, k=k)
    print(f"query: {query!r}  (model {model}, {n} videos indexed in {output}, served from {db})")
    print(format_table(hits))
    for sql in (f"SELECT video_id, colour, shape, direction, score FROM videos WHERE direction IN ('left', 'right') "
                f"ORDER BY similarity(TEXT({query!r})) DESC LIMIT 3",
                f"SELECT direction, count(*) AS videos, max(similarity(TEXT({query!r}))) AS best FROM videos "
                "GROUP BY direction ORDER BY best DESC"):
        print(f"sql: {sql}")
        print(formatted(query_table(db, sql), "table").decode(), end="")
    print(f"search page: vidx serve --db {db}   then open http://127.0.0.1:8000/")
    return hits

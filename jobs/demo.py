"""The embedded demo: sample videos -> index on a local Ray -> best matches for a text query.

Usage: python -m jobs demo [--out DIR] [--model tiny] [--query TEXT]
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from encoders import load_model
from storage.dataset import VIDEOS, read_live

from .index import index
from .synth import synth

logger = logging.getLogger(__name__)


def demo(out: str = "vidx-demo", model: str = "tiny", query: str = "a red circle moves to the left",
         n: int = 12, k: int = 5, seed: int = 0) -> list[dict]:
    """Index n sample videos and return the top-k matches for `query` (also printed)."""
    manifest = synth(Path(out) / "samples", n=n, seed=seed)
    output = str(Path(out) / "index")
    stats = index(str(manifest), output, model=model)
    logger.info("index: %s", stats)
    if model == "tiny":
        logger.warning("model 'tiny' has random weights: the ranking below is meaningless")
    rows = read_live(f"{output}/{VIDEOS}")
    rows = rows.filter(pc.equal(rows["status"], "ok"))
    encoder = load_model(model, device="cpu")
    vectors = np.stack(rows["embedding"].to_numpy(zero_copy_only=False))
    scores = encoder.logit_scale * vectors @ encoder.encode_text([query])[0]
    best = np.argsort(-scores, kind="stable")[:k]
    matches = [{"video_id": rows["video_id"][int(i)].as_py(), "score": round(float(scores[i]), 4),
                "shape": rows["shape"][int(i)].as_py(), "colour": rows["colour"][int(i)].as_py(),
                "direction": rows["direction"][int(i)].as_py()} for i in best]
    print(f"query: {query!r}  (model {model}, {rows.num_rows} videos indexed in {output})")
    for rank, m in enumerate(matches, 1):
        print(f"{rank:>2}. {m['video_id']}  score {m['score']:8.4f}  ({m['colour']} {m['shape']}, {m['direction']})")
    return matches

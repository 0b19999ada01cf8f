"""The embedded demo: sample videos -> encode -> best matches for a text query, in one process.

Usage: python -m jobs demo [--out DIR] [--model tiny] [--query TEXT]
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from encoders import load_model
from encoders.video import VideoDecodeError, decode_video

from .synth import synth

logger = logging.getLogger(__name__)


def demo(out: str = "vidx-demo", model: str = "tiny", query: str = "a red circle moves to the left",
         n: int = 12, k: int = 5, seed: int = 0) -> list[dict]:
    """Encode n sample videos and return the top-k matches for `query` (also printed)."""
    manifest = synth(Path(out) / "samples", n=n, seed=seed)
    encoder = load_model(model)
    if model == "tiny":
        logger.warning("model 'tiny' has random weights: the ranking below is meaningless")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    vectors, kept, started = [], [], time.perf_counter()
    for i, row in enumerate(rows, 1):
        try:
            _, [segment] = decode_video(row["uri"], encoder.sampling, encoder.image_size)
        except VideoDecodeError as e:
            logger.error("%s: %s", row["uri"], e)
            continue
        vectors.append(encoder.encode_clips([segment.frames])[0])
        kept.append(row)
        logger.info("encoded %d/%d videos (%.1f videos/s)", i, len(rows), i / (time.perf_counter() - started))
    scores = encoder.logit_scale * np.stack(vectors) @ encoder.encode_text([query])[0]
    best = np.argsort(-scores, kind="stable")[:k]
    matches = [{"video_id": kept[i]["video_id"], "score": round(float(scores[i]), 4),
                "caption": kept[i]["captions"][0]} for i in best]
    print(f"query: {query!r}  (model {model}, {len(kept)} videos)")
    for rank, match in enumerate(matches, 1):
        print(f"{rank:>2}. {match['video_id']}  score {match['score']:8.4f}  ({match['caption']})")
    return matches

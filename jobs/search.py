"""The search command: text -> video, video -> video, video -> text, with an optional filter.

Usage: python -m jobs search --db URI (--text T | --video PATH | --video-id ID)
           [--target videos|captions] [-k K] [--where FILTER] [--json]
"""

from __future__ import annotations

import json
import logging

import numpy as np
from pymilvus.exceptions import MilvusException

from encoders import load_model
from encoders.video import decode_video
from storage.vectorstore import VectorStore, VectorStoreError

logger = logging.getLogger(__name__)

MAX_K = 1000
TARGETS = ("videos", "captions")
# Models already loaded and checked in this process, by fingerprint: a server loads each once.
_LOADED_MODELS: dict = {}


def load_collection_model(store: VectorStore, collection: str):
    """The model that made `collection`, loaded from its recorded spec; refused if it is not the same."""
    record = store.model_record(collection)
    if record["fingerprint"] in _LOADED_MODELS:
        return _LOADED_MODELS[record["fingerprint"]]
    encoder = load_model(**record["spec"])
    if encoder.fingerprint != record["fingerprint"]:
        raise VectorStoreError(
            f"collection {collection!r} was made by {record['spec']} with fingerprint {record['fingerprint']}, but "
            f"loading that spec now gives {encoder.fingerprint} (the weights or settings changed); re-index and load"
        )
    _LOADED_MODELS[record["fingerprint"]] = encoder
    return encoder


def _stored_vector(store: VectorStore, video_id: str) -> np.ndarray:
    rows = store.query(store.resolve("videos"), filter=f"video_id == {json.dumps(video_id)}",
                       output_fields=["key", "embedding"])
    if not rows:
        raise ValueError(f"--video-id {video_id!r}: no such video in the collection")
    first = min(rows, key=lambda r: r["key"])  # segment 0 of a segmented video
    return np.asarray(first["embedding"], np.float32)


def query_vector(store: VectorStore, collection: str, text: str | None, video: str | None,
                 video_id: str | None) -> np.ndarray:
    """The query's vector, made by the model of `collection` (a resolved name, not an alias)."""
    if video_id is not None:
        return _stored_vector(store, video_id)
    encoder = load_collection_model(store, collection)
    if text is not None:
        return encoder.encode_text([text])[0]
    _, segments = decode_video(video, encoder.sampling, encoder.image_size)
    return encoder.encode_clips([segments[0].frames])[0]


def search(db: str, text: str | None = None, video: str | None = None, video_id: str | None = None,
           target: str = "videos", k: int = 10, where: str = "", store: VectorStore | None = None) -> list[dict]:
    """Top-k rows of `target` for one query, best first, each with its fields and `score`.
    `store`: an open VectorStore on `db` to reuse (a server keeps one)."""
    if sum(q is not None for q in (text, video, video_id)) != 1:
        raise ValueError("give exactly one of --text, --video, --video-id")
    if target not in TARGETS:
        raise ValueError(f"--target {target!r} is not one of {', '.join(TARGETS)}")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"-k must be between 1 and {MAX_K}")
    store = store or VectorStore(db)
    collection = store.resolve(target)
    vector = query_vector(store, collection, text, video, video_id)
    try:
        hits = store.search(collection, vector, k, filter=where, output_fields=["*"])
    except MilvusException as e:
        raise ValueError(f"search of {target!r} failed ({'--where ' + repr(where) if where else 'no filter'}): "
                         f"{e.message}") from e
    for hit in hits:
        hit.pop("embedding", None)
    return hits


def format_table(hits: list[dict]) -> str:
    """One line per hit: rank, score, id, span and the other fields."""
    lines = []
    for rank, hit in enumerate(hits, 1):
        ident = hit.get("key") or hit.get("caption_id")
        span = f" [{hit['start_s']:.1f}-{hit['end_s']:.1f}s]" if hit.get("start_s") is not None else ""
        extra = hit.get("text") or hit.get("uri") or ""
        lines.append(f"{rank:>3}. {hit['score']:.4f}  {ident}{span}  {extra}")
    return "\n".join(lines)

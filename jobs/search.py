"""The search command: text -> video, video -> video, video -> text, with an optional filter.

Usage: python -m jobs search --db URI (--text T | --video PATH | --video-id ID)
           [--target videos|captions] [-k K] [--where FILTER] [--json]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import numpy as np
from pymilvus.exceptions import MilvusException

from storage.vectorstore import VectorStore, VectorStoreError

from .errors import NotFound, UserError

logger = logging.getLogger(__name__)

MAX_K = 1000
TARGETS = ("videos", "captions")
# Models already loaded and checked in this process, by fingerprint: a server loads each once.
_LOADED_MODELS: dict = {}
# VIDEO(value) -> the query as (kind, value): ("VIDEO", a file to decode) or ("ID", a stored video).
# The CLI decodes what it is given (local_video); a server resolves it within its library.
VideoResolver = Callable[[str], tuple[str, str]]


def local_video(value: str) -> tuple[str, str]:
    """The CLI's VIDEO: a path or URL on this machine, decoded as it is."""
    return "VIDEO", value


def load_collection_model(store: VectorStore, collection: str):
    """The model that made `collection`, loaded from its recorded spec; refused if it is not the same."""
    from encoders import load_model

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
        raise NotFound(f"video {video_id!r}: no such video in the collection")
    first = min(rows, key=lambda r: r["key"])  # segment 0 of a segmented video
    return np.asarray(first["embedding"], np.float32)


def _clip_vector(store: VectorStore, collection: str, path: str) -> np.ndarray:
    from encoders.video import decode_video

    encoder = load_collection_model(store, collection)
    _, segments = decode_video(path, encoder.sampling, encoder.image_size)
    return encoder.encode_clips([segments[0].frames])[0]


def query_vector(store: VectorStore, collection: str, kind: str, value: str,
                 videos: VideoResolver = local_video) -> np.ndarray:
    """The vector of a TEXT, VIDEO or ID query, made by the model of `collection` (a resolved name,
    not an alias); `videos` says what a VIDEO value may open."""
    if kind == "VIDEO":
        kind, value = videos(value)
    if kind == "ID":
        return _stored_vector(store, value)
    if kind == "VIDEO":
        return _clip_vector(store, collection, value)
    return load_collection_model(store, collection).encode_text([value])[0]


def _search(store: VectorStore, collection: str, vector: np.ndarray, k: int, where: str) -> list[dict]:
    try:
        return store.search(collection, vector, k, filter=where, output_fields=["*"])
    except MilvusException as e:
        raise UserError(f"search failed ({'--where ' + repr(where) if where else 'no filter'}): {e.message}") from e


def best_segment_per_video(store: VectorStore, collection: str, vector: np.ndarray, k: int,
                           where: str) -> list[dict]:
    """The k best videos, each as its best-scoring segment. Milvus 2.3 servers have no grouping
    search, so segments are fetched in growing batches until k distinct videos (or all) are in."""
    fetch = k
    while True:
        hits = _search(store, collection, vector, fetch, where)
        best: dict[str, dict] = {}
        for hit in hits:  # best first: the first hit of a video is its best segment
            best.setdefault(hit["video_id"], hit)
        if len(best) >= k or len(hits) < fetch or fetch == MAX_K:
            return list(best.values())[:k]
        fetch = min(4 * fetch, MAX_K)


def search(db: str, text: str | None = None, video: str | None = None, video_id: str | None = None,
           target: str = "videos", k: int = 10, where: str = "", store: VectorStore | None = None,
           videos: VideoResolver = local_video, per_video: bool = False) -> list[dict]:
    """Top-k rows of `target` for one query, best first, each with its fields and `score`.
    `store`: an open VectorStore on `db` to reuse (a server keeps one). `videos`: what `video` may
    open (see query_vector). `per_video`: one row per video (its best segment) when target is videos."""
    given = {"TEXT": text, "VIDEO": video, "ID": video_id}
    if sum(value is not None for value in given.values()) != 1:
        raise UserError("give exactly one of --text, --video, --video-id")
    if target not in TARGETS:
        raise UserError(f"--target {target!r} is not one of {', '.join(TARGETS)}")
    if not 1 <= k <= MAX_K:
        raise UserError(f"-k must be between 1 and {MAX_K}")
    store = store or VectorStore(db)
    collection = store.resolve(target)
    kind, value = next((kind, value) for kind, value in given.items() if value is not None)
    vector = query_vector(store, collection, kind, value, videos)
    if per_video and target == "videos":
        hits = best_segment_per_video(store, collection, vector, k, where)
    else:
        hits = _search(store, collection, vector, k, where)
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

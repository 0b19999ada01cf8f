"""The search command: text -> video, video -> video, video -> text, with an optional filter.

Usage: python -m jobs search --db URI (--text T | --video PATH | --video-id ID)
           [--collection videos] [--target videos|captions] [-k K] [--where FILTER] [--json]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from operator import itemgetter

import numpy as np

from errors import NotFound, UserError
from storage.milvus.filters import equals
from storage.schema import EMBEDDING, MAX_RESULTS, TABLES, TEXT_KEY, VIDEO_KEY, VIDEOS, check_corpus_name, target_alias
from storage.milvus.store import VectorStore, VectorStoreError

logger = logging.getLogger(__name__)

# Models made and checked in this process, by fingerprint: a server makes each once.
_MODELS_BY_FINGERPRINT: dict = {}
# VIDEO(value) -> the query as (kind, value): ("VIDEO", a file to decode) or ("ID", a stored video).
# The CLI decodes what it is given (local_video); a server resolves it within its library.
VideoResolver = Callable[[str], tuple[str, str]]
# (model, caption) -> its vector. The CLI encodes its one caption alone; a server batches the
# captions of concurrent requests (jobs.server.batching).
TextEncoding = Callable[[object, str], np.ndarray]


def encode_alone(model, text: str) -> np.ndarray:
    return model.encode_text([text])[0]


def local_video(value: str) -> tuple[str, str]:
    """The CLI's VIDEO: a path or URL on this machine, decoded as it is."""
    return "VIDEO", value


def collection_model(store: VectorStore, collection: str):
    """The model that made `collection`, made again from its recorded spec; refused if it is not the same."""
    from encoders import create_model

    record = store.model_record(collection)
    if record["fingerprint"] in _MODELS_BY_FINGERPRINT:
        return _MODELS_BY_FINGERPRINT[record["fingerprint"]]
    encoder = create_model(**record["spec"])
    if encoder.fingerprint != record["fingerprint"]:
        raise VectorStoreError(
            f"collection {collection!r} was made by {record['spec']} with fingerprint {record['fingerprint']}, but "
            f"that spec now makes {encoder.fingerprint} (the weights or settings changed); re-index and load"
        )
    _MODELS_BY_FINGERPRINT[record["fingerprint"]] = encoder
    return encoder


def _stored_vector(store: VectorStore, videos: str, video_id: str) -> np.ndarray:
    """The stored vector of a video of collection `videos` (its first segment)."""
    rows = store.query(store.resolve(videos), filter=equals("video_id", video_id), output_fields=[VIDEO_KEY, EMBEDDING])
    if not rows:
        raise NotFound(f"video {video_id!r}: no such video in the collection")
    first = min(rows, key=lambda r: r[VIDEO_KEY])  # segment 0 of a segmented video
    return np.asarray(first[EMBEDDING], np.float32)


def _clip_vector(store: VectorStore, collection: str, path: str) -> np.ndarray:
    from encoders.video import decode_video

    encoder = collection_model(store, collection)
    _, segments = decode_video(path, encoder.sampling, encoder.image_size)
    return encoder.encode_clips([segments[0].frames])[0]


def query_vector(store: VectorStore, collection: str, kind: str, value: str,
                 videos: VideoResolver = local_video, video_collection: str = VIDEOS,
                 texts: TextEncoding = encode_alone) -> np.ndarray:
    """The vector of a TEXT, VIDEO or ID query, made by the model of `collection` (a resolved name,
    not an alias); `videos` says what a VIDEO value may open; an ID is a video of `video_collection`;
    `texts` encodes a TEXT."""
    if kind == "VIDEO":
        kind, value = videos(value)
    if kind == "ID":
        return _stored_vector(store, video_collection, value)
    if kind == "VIDEO":
        return _clip_vector(store, collection, value)
    if not value.strip():
        raise UserError("the text to search for is empty")
    return texts(collection_model(store, collection), value)


def _search(store: VectorStore, collection: str, vector: np.ndarray, k: int, where: str) -> list[dict]:
    try:
        return store.search(collection, vector, k, filter=where, output_fields=["*"])
    except VectorStoreError as e:  # the filter, most likely: say which one
        raise UserError(f"search failed ({'--where ' + repr(where) if where else 'no filter'}): {e}") from e


def hits_covering_groups(search: Callable[[int], list[dict]], group_of: Callable[[dict], Hashable], groups: int,
                         most: int) -> tuple[list[dict], bool]:
    """The best hits, fetched in growing batches until they hold `groups` distinct groups (or
    every row there is): the best hit of each group is its first, so those groups are the best
    ones and their best hits are in. (hits, whether they do: False when `most` hits hold fewer.)
    Milvus 2.3 has no grouping search."""
    fetch = min(groups, most)
    while True:
        hits = search(fetch)
        if len({group_of(hit) for hit in hits}) >= groups or len(hits) < fetch:
            return hits, True
        if fetch == most:
            return hits, False
        fetch = min(4 * fetch, most)


def best_segment_per_video(store: VectorStore, collection: str, vector: np.ndarray, k: int,
                           where: str) -> list[dict]:
    """The k best videos (fewer when MAX_RESULTS segments hold fewer), each as its best-scoring segment."""
    hits, _ = hits_covering_groups(lambda n: _search(store, collection, vector, n, where), itemgetter("video_id"), k,
                                   MAX_RESULTS)
    best: dict[str, dict] = {}
    for hit in hits:  # best first: the first hit of a video is its best segment
        best.setdefault(hit["video_id"], hit)
    return list(best.values())[:k]


def check_search(given: dict, target: str, k: int) -> None:
    if sum(value is not None for value in given.values()) != 1:
        raise UserError("give exactly one of --text, --video, --video-id")
    if target not in TABLES:
        check_corpus_name(target)
    if not 1 <= k <= MAX_RESULTS:
        raise UserError(f"-k must be between 1 and {MAX_RESULTS}")


def search(db: str, text: str | None = None, video: str | None = None, video_id: str | None = None,
           target: str = VIDEOS, k: int = 10, where: str = "", store: VectorStore | None = None,
           videos: VideoResolver = local_video, per_video: bool = False, collection: str = VIDEOS,
           texts: TextEncoding = encode_alone) -> list[dict]:
    """Top-k rows of `target` (the videos of `collection`, their captions, or a corpus NAME) for one query, best
    first, each with its fields and `score`. `store`: an open VectorStore on `db` to reuse (a server
    keeps one). `videos`: what `video` may open, `texts` how `text` is encoded (see query_vector). `per_video`: one row per video
    (its best segment) when target is videos."""
    given = {"TEXT": text, "VIDEO": video, "ID": video_id}
    check_search(given, target, k)
    store = store or VectorStore(db, create=False)
    searched = store.resolve(target_alias(collection, target))
    kind, value = next((kind, value) for kind, value in given.items() if value is not None)
    vector = query_vector(store, searched, kind, value, videos, video_collection=collection, texts=texts)
    if per_video and target == VIDEOS:
        hits = best_segment_per_video(store, searched, vector, k, where)
    else:
        hits = _search(store, searched, vector, k, where)
    for hit in hits:
        hit.pop(EMBEDDING, None)
    return hits


def format_table(hits: list[dict]) -> str:
    """One line per hit: rank, score, id, span and the other fields."""
    lines = []
    for rank, hit in enumerate(hits, 1):
        ident = hit.get(VIDEO_KEY) or hit.get("caption_id") or hit.get(TEXT_KEY)
        span = f" [{hit['start_s']:.1f}-{hit['end_s']:.1f}s]" if hit.get("start_s") is not None else ""
        extra = hit.get("text") or hit.get("uri") or ""
        lines.append(f"{rank:>3}. {hit['score']:.4f}  {ident}{span}  {extra}")
    return "\n".join(lines)

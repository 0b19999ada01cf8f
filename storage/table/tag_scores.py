"""Zero-shot tagging's arithmetic and rows: each video's best texts by the paper's score, as tag rows.

The score is CLIP2Video's: the inner product of the unit vectors of a video and a text (cosine
similarity). Ties go to the text that comes first in the corpus' text_id order, so the same
vectors give the same tags however the videos are split into blocks.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.schema import KEY_SEPARATOR, SCORE, TAG_KEY, TEXT_KEY
from storage.top_k import best_with_ties, ranks_within

# A video row's candidate texts, as the scoring tasks return them (_text: the corpus row).
CANDIDATES = pa.schema([("video_id", pa.string()), ("segment", pa.int32()), ("video_run_id", pa.string()),
                        ("_text", pa.int64()), (SCORE, pa.float64())])


def best_texts(videos: np.ndarray, texts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each video's (rows of `videos`, (n, D)) k best texts (rows of `texts`, (T, D)): flat arrays
    (video row, text row, score), by video, best first, ties by text row. One matrix product."""
    scores = videos @ texts.T  # (n, T)
    video, text = best_with_ties(scores, k)
    kept = ranks_within(video) < k
    return video[kept], text[kept], scores[video[kept], text[kept]]


def top_per_group(group: np.ndarray, text: np.ndarray, score: np.ndarray, segment: np.ndarray,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """Of candidate (group, text, score, segment) rows, each group's k best texts, a text's score
    being its best over the group's rows (its segment: the first that scores it so). Returns the
    chosen rows, by group and rank, and each one's rank (0 the best)."""
    order = np.lexsort((segment, -score, text, group))
    pair = np.stack([group[order], text[order]])
    firsts = order[np.r_[True, np.any(pair[:, 1:] != pair[:, :-1], axis=0)]]  # each text's best row
    ranked = firsts[np.lexsort((text[firsts], -score[firsts], group[firsts]))]
    rank = ranks_within(group[ranked])
    return ranked[rank < k], rank[rank < k]


def scored_block(block: pa.Table, texts: np.ndarray, k: int) -> pa.Table:
    """A block of video rows' (video_id, segment, run_id, embedding) k best texts, as CANDIDATES."""
    vectors = np.stack(block["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    video, text, score = best_texts(vectors, texts, k)
    taken = block.select(["video_id", "segment", "run_id"]).take(pa.array(video))
    return pa.table([taken["video_id"], taken["segment"], taken["run_id"], pa.array(text, pa.int64()),
                     pa.array(score.astype(np.float64))], schema=CANDIDATES)


def chosen_rows(candidates: pa.Table, k: int, min_score: float | None, per_segment: bool) -> pa.Table:
    """Each video's (or segment's) k best of the candidates, ranked (1 the best), at least `min_score`."""
    group = candidates["video_id"]
    if per_segment:
        group = pc.binary_join_element_wise(group, candidates["segment"].cast(pa.string()), KEY_SEPARATOR)
    codes = pc.dictionary_encode(group.combine_chunks()).indices.to_numpy()
    rows, rank = top_per_group(codes, candidates["_text"].to_numpy(), candidates[SCORE].to_numpy(),
                               candidates["segment"].to_numpy(zero_copy_only=False), k)
    chosen = candidates.take(pa.array(rows)).append_column("rank", pa.array(rank + 1, pa.int32()))
    return chosen if min_score is None else chosen.filter(pc.greater_equal(chosen[SCORE], min_score))


def tag_rows(chosen: pa.Table, texts: pa.Table, fingerprint: str, run_id: str, schema: pa.Schema) -> pa.Table:
    """The rows to store (schema.TAG_FIELDS) of `chosen`, whose `_text` are rows of the corpus' `texts`."""
    taken, n = texts.take(chosen["_text"]), chosen.num_rows
    key = pc.binary_join_element_wise(chosen["video_id"], chosen["segment"].cast(pa.string()),
                                      chosen["rank"].cast(pa.string()), KEY_SEPARATOR)
    return pa.table({TAG_KEY: key, "video_id": chosen["video_id"], "segment": chosen["segment"],
                     TEXT_KEY: taken[TEXT_KEY], "text": taken["text"], SCORE: chosen[SCORE], "rank": chosen["rank"],
                     "video_run_id": chosen["video_run_id"],
                     "model_fingerprint": pa.array([fingerprint] * n, pa.string()),
                     "run_id": pa.array([run_id] * n, pa.string())}, schema=schema)

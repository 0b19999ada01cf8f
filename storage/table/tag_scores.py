"""Zero-shot tagging's arithmetic: each video's best texts by the paper's score, numpy only.

The score is CLIP2Video's: the inner product of the unit vectors of a video and a text (cosine
similarity). Ties go to the text that comes first in the corpus' text_id order, so the same
vectors give the same tags however the videos are split into blocks.
"""

from __future__ import annotations

import numpy as np


def ranks_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal values of a sorted `groups`."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))


def best_texts(videos: np.ndarray, texts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each video's (rows of `videos`, (n, D)) k best texts (rows of `texts`, (T, D)): flat arrays
    (video row, text row, score), by video, best first, ties by text row. One matrix product."""
    scores = videos @ texts.T  # (n, T)
    n, count = scores.shape
    k = min(k, count)
    if n == 0 or k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if k < count:  # every text scoring at least the k-th best: k, more only where tied
        kth = np.partition(scores, count - k, axis=1)[:, count - k]
        video, text = np.nonzero(scores >= kth[:, None])
    else:
        video, text = np.divmod(np.arange(n * count), count)
    score = scores[video, text]
    order = np.lexsort((text, -score, video))
    video, text, score = video[order], text[order], score[order]
    kept = ranks_within(video) < k
    return video[kept], text[kept], score[kept]


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

"""The best columns of each row of a score matrix, ties kept: the one top-k of the exact copy's
searches and of zero-shot tagging.

Every column scoring at least a row's k-th best score is kept (k of them, more where tied), best
first, tied columns in column order: the same scores give the same answer however rows are split
into blocks, and the caller decides what a tie at the k-th place keeps.
"""

from __future__ import annotations

import numpy as np


def ranks_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal values of a sorted `groups`."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))


def best_with_ties(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Of `scores` (n, m), each row's columns scoring at least its k-th best: flat arrays (row,
    column), by row, best first, ties by column. k of 0 keeps nothing; k >= m keeps every column."""
    n, m = scores.shape
    if n == 0 or m == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if k < m:
        kth = np.partition(scores, m - k, axis=1)[:, m - k]
        row, column = np.nonzero(scores >= kth[:, None])
    else:
        row, column = np.divmod(np.arange(n * m), m)
    order = np.lexsort((column, -scores[row, column], row))
    return row[order], column[order]

"""Rows of unit vectors for the tests of near-duplicates' engine: blocks of them, the pairs a
brute-force float64 product finds, and a pair exactly at a threshold of 0.5 beside one just below."""

from __future__ import annotations

import numpy as np

from storage.table.duplicate_pairs import Block, RowPairs

DIM = 64


def unit_rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def block(vectors: np.ndarray, first: int = 0, videos: np.ndarray | None = None) -> Block:
    rows = np.arange(first, first + len(vectors))
    return Block(vectors, rows, rows if videos is None else videos, np.zeros(len(vectors), np.int64))


def brute_force(vectors: np.ndarray, videos: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Every pair of rows (i < j) of distinct videos whose float64 product is at least `threshold`."""
    scores = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    return {(i, j) for i, j in zip(*np.nonzero(scores >= threshold)) if i < j and videos[i] != videos[j]}


def as_set(pairs: RowPairs) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in zip(pairs.first.tolist(), pairs.second.tolist())}


def edge_vectors() -> np.ndarray:
    """Rows 0-2: row 1 scores exactly 0.5 with row 0, row 2 the float32 just below (0.49999997)."""
    vectors = unit_rows(30, seed=3)
    vectors[:3] = 0
    vectors[0, 0] = 1
    vectors[1, :2] = [0.5, np.sqrt(0.75)]
    vectors[2, :2] = [np.nextafter(np.float32(0.5), np.float32(0)), np.sqrt(0.75)]
    return vectors

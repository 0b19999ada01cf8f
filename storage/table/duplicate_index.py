"""A coarse partition of the library for near-duplicates: faiss' inverted file (IVF), so that a row
is compared with the rows of a few cells instead of with every row.

The cells are the k-means centroids of a sample of the library (spherical: unit centroids, scored
by inner product). Each block of the library becomes an IVF index over those cells; each row of a
query block is compared, in every such index, with the rows of its `probes` nearest cells (faiss'
range search, given the cells found once per query block). What it finds is scored again in
float64 as the blocked product's candidates are (storage/table/duplicate_pairs.py), so no pair
below the threshold is kept; what it misses are pairs whose two rows lie in cells that neither
probes.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from .duplicate_pairs import Block, RowPairs, candidate_floor, rescored

# Sample rows per cell to train on: faiss' k-means asks for at least 39 and uses at most 256.
SAMPLE_PER_CELL = 64
# Cells per √rows. Fewer cells train faster and hold more rows each (docs/benchmarks.md, "Near-duplicates").
CELLS_PER_ROOT = 2
KMEANS_ITERATIONS = 20
KMEANS_SEED = 1234


def cells_for(rows: int) -> int:
    """Cells of a partition of `rows` rows; one (every row compared with every row) for a library
    too small to sample SAMPLE_PER_CELL rows a cell."""
    return int(max(1, min(CELLS_PER_ROOT * np.sqrt(rows), rows // SAMPLE_PER_CELL)))


def sample_rows(rows: int, cells: int) -> np.ndarray:
    """Which rows (numbers, evenly spaced) to train `cells` cells on."""
    return np.unique(np.linspace(0, rows - 1, min(rows, SAMPLE_PER_CELL * cells)).astype(np.int64))


def train_cells(sample: np.ndarray, cells: int) -> np.ndarray:
    """`cells` unit centroids (cells, D) of the rows of `sample` (k-means by inner product)."""
    kmeans = faiss.Kmeans(sample.shape[1], cells, niter=KMEANS_ITERATIONS, spherical=True, seed=KMEANS_SEED)
    kmeans.train(np.ascontiguousarray(sample, np.float32))
    return kmeans.centroids


def _quantizer(centroids: np.ndarray) -> faiss.IndexFlatIP:
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(centroids)
    return quantizer


def cell_index(centroids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """An IVF index of a block's `vectors` over the cells of `centroids`, serialized (uint8; faiss'
    ids: the rows' positions in the block)."""
    index = faiss.IndexIVFFlat(_quantizer(centroids), centroids.shape[1], len(centroids), faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True  # its cells are the centroids given: nothing to train
    index.add(np.ascontiguousarray(vectors, np.float32))
    return faiss.serialize_index(index)


@dataclass
class Probed:
    """A query block and each row's `probes` nearest cells (faiss' Iq, Dq)."""

    block: Block
    cells: np.ndarray  # (n, probes) int64
    scores: np.ndarray  # (n, probes) float32


def probed(centroids: np.ndarray, block: Block, probes: int) -> Probed:
    probes = min(probes, len(centroids))
    scores, cells = _quantizer(centroids).search(np.ascontiguousarray(block.vectors, np.float32), probes)
    return Probed(block, cells, scores)


def probed_rows(queries: Probed, library: Block, index: np.ndarray, threshold: float) -> RowPairs:
    """The pairs of a query row and a row of `library` (`index`: its cell_index) in one of the
    query's probed cells, of distinct videos, scoring at least `threshold` (in float64)."""
    index = faiss.deserialize_index(index)
    index.nprobe = queries.cells.shape[1]
    vectors = np.ascontiguousarray(queries.block.vectors, np.float32)
    floor = candidate_floor(threshold, vectors.shape[1])
    limits, _, found = index.range_search_preassigned(vectors, floor, queries.cells, queries.scores)
    query = np.repeat(np.arange(len(vectors)), np.diff(limits.astype(np.int64)))
    return rescored(queries.block, library, query, found.astype(np.int64), threshold)

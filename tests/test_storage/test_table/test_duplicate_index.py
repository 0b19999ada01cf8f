"""The partition of near-duplicates (storage/table/duplicate_index.py): faiss cells probed everywhere
find what the blocked product finds, fewer probes a subset, never a pair below the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from near_duplicates import as_set, block, brute_force, edge_vectors, unit_rows
from storage.table.duplicate_index import cell_index, cells_for, probed, probed_rows, train_cells


def test_a_partition_probing_every_cell_finds_what_the_product_finds_and_nothing_below():
    vectors = np.concatenate([unit_rows(300, seed=5), edge_vectors()])
    near = vectors[:50] + 0.2 * unit_rows(50, seed=6)
    vectors = np.concatenate([vectors, near / np.linalg.norm(near, axis=1, keepdims=True)])
    cells = cells_for(len(vectors))
    assert cells > 1
    centroids = train_cells(vectors, cells)
    library = block(vectors)
    every = probed_rows(probed(centroids, library, cells), library, cell_index(centroids, vectors), 0.5)
    assert as_set(every) == brute_force(vectors, np.arange(len(vectors)), 0.5)
    few = probed_rows(probed(centroids, library, 1), library, cell_index(centroids, vectors), 0.5)
    assert as_set(few) <= as_set(every) and np.all(few.score >= 0.5)


@pytest.mark.parametrize("rows", [0, 1, 127, 128, 10_000])
def test_cells_grow_as_the_root_of_the_rows_with_enough_rows_to_train_each(rows):
    cells = cells_for(rows)
    assert cells >= 1 and (cells == 1 or rows >= 64 * cells)

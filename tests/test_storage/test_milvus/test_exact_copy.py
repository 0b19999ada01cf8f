"""The exact copy of a milvus-lite collection (storage/milvus/exact_copy.py): written from inserted
batches, its sizes checked as it is written, not when it is first read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from errors import IntegrityError
from storage.milvus.exact_copy import ExactCopy, ExactCopyWriter, vectors_path

DIM = 4


def rows(vectors: pa.Array) -> pa.Table:
    return pa.table({"key": [f"v{i}#0" for i in range(len(vectors))], "embedding": vectors})


def test_a_copy_reads_back_the_float32_vectors_written(tmp_path):
    vectors = np.arange(3 * DIM, dtype=np.float32).reshape(3, DIM)
    with ExactCopyWriter(tmp_path / "c.arrow") as copy:
        copy.write(rows(pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)))
    assert np.array_equal(ExactCopy(tmp_path / "c.arrow").matrix, vectors)


@pytest.mark.parametrize("vectors", [
    pa.FixedSizeListArray.from_arrays(pa.array(np.ones(3 * DIM)), DIM),  # float64: twice the bytes
    pa.array([[1.0] * DIM, None, [1.0] * DIM], pa.list_(pa.float32(), DIM)),  # a null row: fewer
], ids=["float64", "a null vector"])
def test_vectors_of_other_sizes_are_refused_as_they_are_written_and_nothing_is_published(vectors, tmp_path):
    path = tmp_path / "c.arrow"
    with pytest.raises(IntegrityError, match="the exact copy stores 4 float32 a row"), ExactCopyWriter(path) as copy:
        copy.write(rows(vectors))
    assert list(tmp_path.iterdir()) == [] and not vectors_path(path).exists()

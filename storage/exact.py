"""Exact search over an Arrow copy of a collection: how unfiltered searches are answered on milvus-lite.

milvus-lite 3.2.2 visits every stored row in Python on every search (its cross-segment
de-duplication and tombstone checks in search/executor_indexed.py run before and whatever the
index does: 98% of a search's time at 100k rows, profiled), so a search costs about 1 µs per
stored row with HNSW, FLAT or IVF alike, and more segments, other insert batches, flushes or
compactions do not change that. A numpy product over the same vectors costs a fifth of it
(bench/query_latency.py). A collection version never changes once built, so a copy written while
it loads stays exact; filtered searches and scans still go to milvus-lite.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa


def copy_path(db: str, name: str) -> Path:
    """Beside the milvus-lite directory (which milvus-lite owns): `vidx.db.exact/<name>.arrow`."""
    return Path(f"{db}.exact") / f"{name}.arrow"


class CopyWriter:
    """Appends inserted batches to an Arrow IPC file, published under its name only when closed."""

    def __init__(self, path: Path):
        self.path, self.temp, self.writer = path, path.with_name(f".tmp-{path.name}"), None

    def write(self, rows: pa.Table) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pa.ipc.new_file(str(self.temp), rows.schema)
        self.writer.write_table(rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            os.replace(self.temp, self.path)

    def discard(self) -> None:
        """A load that failed: nothing is published."""
        if self.writer is not None:
            self.writer.close()
            self.temp.unlink(missing_ok=True)


class ExactCopy:
    """A collection's rows, memory-mapped: the vectors are read in place, never copied."""

    def __init__(self, path: Path):
        self.rows = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        dim = self.rows.schema.field("embedding").type.list_size
        self.matrices = [chunk.flatten().to_numpy().reshape(len(chunk), dim)  # (n, D) views of the file
                         for chunk in self.rows["embedding"].chunks]

    def search(self, vector: np.ndarray, k: int, output_fields: list[str]) -> list[dict]:
        """Top-k by inner product, best first, ties in row order: [{output fields..., "score"}]."""
        scores = np.concatenate([matrix @ np.asarray(vector, np.float32) for matrix in self.matrices])
        k = min(k, len(scores))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        columns = self.rows.column_names if "*" in output_fields else output_fields
        hits = self.rows.select(columns).take(pa.array(top)).to_pylist()  # select first: take copies columns
        return [{**hit, "score": float(score)} for hit, score in zip(hits, scores[top])]

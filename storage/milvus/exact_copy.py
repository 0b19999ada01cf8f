"""A flat copy of a collection (searched by brute force): how unfiltered searches are answered on milvus-lite.

milvus-lite 3.2.2 visits every stored row in Python on every search (its cross-segment
de-duplication and tombstone checks in search/executor_indexed.py run before and whatever the
index does: 98% of a search's time at 100k rows, profiled), so a search costs about 1 µs per
stored row with HNSW, FLAT or IVF alike, and more segments, other insert batches, flushes or
compactions do not change that. A numpy product over the same vectors costs a fifth of it
(bench/query_latency.py). A collection version never changes once built, so a copy written while
it loads stays complete. SQL queries filter, rank and scan the copy too (milvus-lite's HNSW
walk under a selective filter misses a third of the right rows); `vidx search --where`, whose
filter is a Milvus expression, still goes to milvus-lite.

The copy is two files: the scalar columns as an Arrow IPC file, and the vectors as one row-major
float32 matrix, read whole when a search first needs them. One matrix is one matrix-vector product
per search; the record batches of an Arrow column would be one product per batch (a load writes
256-row batches: 2.4x slower at 30k rows).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from errors import IntegrityError

from storage.table.atomic import temporary_path
from storage.query.relational import matching_rows
from storage.schema import DIM_KEY, EMBEDDING, SCORE
from storage.query import ScoreRange

# A filter keeping fewer than this share of the rows: score only those (a gather, then a product).
GATHER_BELOW = 0.2


def flat_copy_path(db: str, name: str) -> Path:
    """Beside the milvus-lite directory (which milvus-lite owns): `vidx.db.flat/<name>.arrow`, whose
    vectors are `<name>.f32`. The Arrow file is published last: it marks a complete copy."""
    return Path(f"{db}.flat") / f"{name}.arrow"


def vectors_path(path: Path) -> Path:
    return path.with_suffix(".f32")


class FlatCopyWriter:
    """Appends inserted batches to a copy, published under its name only when closed."""

    def __init__(self, path: Path):
        self.path, self.rows_writer, self.vectors_file = path, None, None
        self.temporary = {path: temporary_path(path), vectors_path(path): temporary_path(vectors_path(path))}

    def write(self, rows: pa.Table) -> None:
        if self.rows_writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            dim = rows.schema.field(EMBEDDING).type.list_size
            scalars = rows.schema.remove(rows.schema.get_field_index(EMBEDDING))
            scalars = scalars.with_metadata({**(scalars.metadata or {}), DIM_KEY.encode(): str(dim).encode()})
            self.rows_writer = pa.ipc.new_file(self.temporary[self.path], scalars)
            self.vectors_file = open(self.temporary[vectors_path(self.path)], "wb")
        self.rows_writer.write_table(rows.drop_columns(EMBEDDING))  # metadata aside, the same schema
        for chunk in rows[EMBEDDING].chunks:
            self.vectors_file.write(chunk.flatten().to_numpy())  # float32, row after row

    def close(self) -> None:
        if self.rows_writer is not None:
            self.rows_writer.close()
            self.vectors_file.close()
            os.replace(self.temporary[vectors_path(self.path)], vectors_path(self.path))
            os.replace(self.temporary[self.path], self.path)  # last: it marks a complete copy

    def discard(self) -> None:
        """A load that failed: nothing is published."""
        if self.rows_writer is not None:
            self.rows_writer.close()
            self.vectors_file.close()
            for temporary in self.temporary.values():
                Path(temporary).unlink(missing_ok=True)


def remove_flat_copy(path: Path) -> None:
    path.unlink(missing_ok=True)  # the marker first: a half-removed copy is no copy
    vectors_path(path).unlink(missing_ok=True)


class FlatCopy:
    """A collection's rows, in memory: exact top-k and scans, under a filter or none.

    The vectors are read into memory rather than mapped: a product over the mapped file ran 12%
    slower than over the same matrix in memory (100k x 1024: 23.8 against 20.5 ms), as milvus-lite
    and a numpy search hold theirs. The scalars are one chunk: taking the hits from the load's
    256-row batches cost another ~1 ms per search. A filter is DuckDB SQL over the scalars
    (storage/relational.py), the same conditions the Milvus filter of the statement says."""

    def __init__(self, path: Path):
        self.rows = pa.ipc.open_file(pa.memory_map(str(path))).read_all().combine_chunks()
        dim = int(self.rows.schema.metadata[DIM_KEY.encode()])
        self.matrix = np.fromfile(vectors_path(path), np.float32).reshape(-1, dim)  # (n, D)
        if len(self.matrix) != self.rows.num_rows:
            raise IntegrityError(f"{path}: {len(self.matrix)} vectors for {self.rows.num_rows} rows")

    def _kept(self, where: str) -> np.ndarray | None:
        """Positions of the rows `where` keeps; None (every row) for no filter."""
        return matching_rows(self.rows, where) if where else None

    def _scores(self, vector: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
        """Inner products of the kept rows: a product over the few rows a narrow filter keeps, else
        over every row (gathering half of 100k x 1024 costs 3x the product itself)."""
        vector = np.asarray(vector, np.float32)
        if kept is not None and len(kept) < GATHER_BELOW * len(self.matrix):
            return self.matrix[kept] @ vector
        scores = self.matrix @ vector
        return scores if kept is None else scores[kept]

    def _table(self, positions: np.ndarray, columns: list[str] | None, scores: np.ndarray | None) -> pa.Table:
        chosen = (self.rows if columns is None else self.rows.select(columns)).take(pa.array(positions))
        if scores is None:
            return chosen
        return chosen.append_column(SCORE, pa.array(scores.astype(np.float64)))

    def top_k(self, vector: np.ndarray, k: int, where: str = "", columns: list[str] | None = None) -> pa.Table:
        """The k best rows `where` keeps by inner product, best first (ties in row order), and every
        row tied with the k-th: which of them a LIMIT keeps is the relational step's to say."""
        kept = self._kept(where)
        scores = self._scores(vector, kept)
        positions = np.arange(len(self.matrix)) if kept is None else kept
        if 0 < k < len(scores):
            chosen = np.flatnonzero(scores >= np.partition(scores, len(scores) - k)[len(scores) - k])
        else:
            chosen = np.arange(len(scores) if k else 0)
        chosen = chosen[np.lexsort((chosen, -scores[chosen]))]
        return self._table(positions[chosen], columns, scores[chosen])

    def scan(self, vector: np.ndarray | None, where: str = "", columns: list[str] | None = None,
             scores: ScoreRange = ScoreRange()) -> pa.Table:
        """Every row `where` keeps, in row order; with a vector, each with its score, kept when
        within `scores`."""
        kept = self._kept(where)
        positions = np.arange(len(self.matrix)) if kept is None else kept
        if vector is None:
            return self._table(positions, columns, None)
        products = self._scores(vector, kept)
        within = scores.within(products)
        return self._table(positions[within], columns, products[within])

    def count(self, where: str = "") -> int:
        kept = self._kept(where)
        return len(self.matrix) if kept is None else len(kept)

    def search(self, vector: np.ndarray, k: int, output_fields: list[str]) -> list[dict]:
        """Top-k by inner product, best first, ties in row order: [{output fields..., "score"}]."""
        columns = None if "*" in output_fields else output_fields
        return self.top_k(vector, k, columns=columns).slice(0, k).to_pylist()

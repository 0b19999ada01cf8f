"""The exact copy of a collection: its scalar columns and vectors beside a milvus-lite database,
searched by brute force. On milvus-lite every question is answered from it (storage/query).

milvus-lite visits every stored row in Python on every search and query, whatever its index (its
cross-segment de-duplication and tombstone checks run before the index does), and its filtered
HNSW walk misses rows under a selective filter; a product over the same vectors is exact and
cheaper (docs/benchmarks.md, "SQL queries under filters"). A night's rows never change once the
night is published, so a copy written while they load stays complete.

The copy is two files per night that wrote rows (storage/milvus/nights.py): the scalar columns
as an Arrow IPC file, and the vectors as one row-major float32 matrix, read whole when a question
first needs them: one matrix is one matrix-vector product per search, where the record batches of
an Arrow column would be one product per batch. A later night adds its rows' two files and the
list of row versions it superseded; the copy of night N is the rows of nights 1..N that no night up
to N superseded. Which rows a filter keeps is the query engine's to say (storage/query): the copy
takes their positions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from errors import IntegrityError
from storage.schema import DIM_KEY, EMBEDDING, ROW_VERSION, SCORE
from storage.table.atomic import temporary_path
from storage.top_k import best_with_ties

from .nights import FIRST_NIGHT
from .scores import ScoreRange

# A filter keeping fewer than this share of the rows: score only those (a gather, then a product);
# gathering half the rows costs more than the product over all of them (docs/benchmarks.md, "Why
# the constants are what they are").
GATHER_BELOW = 0.2


def exact_copy_path(db: str, name: str) -> Path:
    """Beside the milvus-lite directory (which milvus-lite owns): `vidx.db.flat/<name>.arrow`, whose
    vectors are `<name>.f32`: the rows of the collection as built whole (its first night). The
    Arrow file is published last: it marks a complete copy."""
    return Path(f"{db}.flat") / f"{name}.arrow"


def night_path(path: Path, night: int) -> Path:
    """The rows a later night wrote: `<name>.n<night>.arrow` (and `.f32`) beside the first night's."""
    return path if night <= FIRST_NIGHT else path.with_name(f"{path.stem}.n{night}.arrow")


def superseded_path(path: Path, night: int) -> Path:
    """The row versions night `night` superseded: `<name>.n<night>.superseded.arrow`."""
    return path.with_name(f"{path.stem}.n{night}.superseded.arrow")


def vectors_path(path: Path) -> Path:
    return path.with_suffix(".f32")


class ExactCopyWriter:
    """Appends inserted batches to a copy, published under its name only when closed. A context
    manager: leaving it with any error discards what was written, temporary files included."""

    def __init__(self, path: Path):
        self.path, self.rows_writer, self.vectors_file, self.dim = path, None, None, None
        self.temporary = {path: temporary_path(path), vectors_path(path): temporary_path(vectors_path(path))}

    def __enter__(self) -> ExactCopyWriter:
        return self

    def __exit__(self, error_type, *_) -> None:
        if error_type is None:
            self.close()
        else:
            self.discard()

    def start(self, scalars: pa.Schema) -> None:
        """Open the files for rows of these scalar columns (with the vectors' D in its metadata)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.vectors_file = open(self.temporary[vectors_path(self.path)], "wb")
        self.rows_writer = pa.ipc.new_file(self.temporary[self.path], scalars)

    def write(self, rows: pa.Table) -> None:
        if self.rows_writer is None:
            self.dim = rows.schema.field(EMBEDDING).type.list_size
            scalars = rows.schema.remove(rows.schema.get_field_index(EMBEDDING))
            self.start(scalars.with_metadata({**(scalars.metadata or {}), DIM_KEY.encode(): str(self.dim).encode()}))
        vectors = [self.vector_values(chunk) for chunk in rows[EMBEDDING].chunks]  # checked before any is written
        self.rows_writer.write_table(rows.drop_columns(EMBEDDING))  # metadata aside, the same schema
        for values in vectors:
            self.vectors_file.write(values)

    def vector_values(self, vectors: pa.Array) -> np.ndarray:
        """The values of `vectors`, row after row, as the copy stores them: len × D float32, else an
        IntegrityError now (a reader would find the rows and vectors apart, or read garbage)."""
        values = vectors.flatten().to_numpy(zero_copy_only=False)
        if values.dtype != np.float32 or values.nbytes != len(vectors) * self.dim * 4:
            raise IntegrityError(f"{self.path}: {len(vectors)} vectors of {vectors.type} hold {values.nbytes} bytes "
                                 f"of {values.dtype}; the exact copy stores {self.dim} float32 a row "
                                 f"({len(vectors) * self.dim * 4} bytes)")
        return values

    def _close_files(self) -> None:
        for handle in (self.rows_writer, self.vectors_file):
            if handle is not None:
                handle.close()

    def close(self) -> None:
        """Publish the copy: the vectors, then the Arrow file that marks it complete."""
        self._close_files()
        if self.rows_writer is not None:
            os.replace(self.temporary[vectors_path(self.path)], vectors_path(self.path))
            os.replace(self.temporary[self.path], self.path)

    def discard(self) -> None:
        """A load that failed: nothing is published, nothing is left behind."""
        try:
            self._close_files()
        finally:
            for temporary in self.temporary.values():
                Path(temporary).unlink(missing_ok=True)


def write_superseded(path: Path, night: int, versions: pa.Array) -> None:
    """The row versions `night` superseded, beside its rows; published whole or not at all."""
    target = superseded_path(path, night)
    temporary = temporary_path(target)
    with pa.ipc.new_file(temporary, pa.schema([(ROW_VERSION, pa.string())])) as writer:
        writer.write_table(pa.table({ROW_VERSION: versions.cast(pa.string())}))
    os.replace(temporary, target)


def write_empty_night(path: Path, night: int) -> None:
    """A night that wrote no rows: its files hold none, with the first night's columns."""
    with ExactCopyWriter(night_path(path, night)) as writer:
        writer.start(pa.ipc.open_file(pa.memory_map(str(path))).schema)


def remove_exact_copy(path: Path) -> None:
    path.unlink(missing_ok=True)  # the marker first: a half-removed copy is no copy
    vectors_path(path).unlink(missing_ok=True)
    for later in path.parent.glob(f"{path.stem}.n*"):
        later.unlink(missing_ok=True)


def _night_rows(path: Path) -> tuple[pa.Table, np.ndarray]:
    """One night's rows (scalars) and their vectors (n, D), checked against each other."""
    rows = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    dim = int(rows.schema.metadata[DIM_KEY.encode()])
    vectors = vectors_path(path)
    # Mapped, not read: a process holds the pages it touches, and a fresh one answers at once.
    matrix = np.asarray(np.memmap(vectors, np.float32, mode="r")) if vectors.stat().st_size else np.empty(0, np.float32)
    matrix = matrix.reshape(-1, dim)
    if len(matrix) != rows.num_rows:
        raise IntegrityError(f"{path}: {len(matrix)} vectors for {rows.num_rows} rows")
    return rows, matrix


class ExactCopy:
    """A collection's rows: exact top-k, best groups, scans and counts over the rows a filter kept
    (positions, ascending; None for every row).

    The vectors of the first night are mapped from their file rather than read: a fresh process
    answers without reading the library first, and no process holds a second copy of it (a
    product over a mapped file is ~12 % slower than over memory: docs/benchmarks.md, "Load and
    query latency"); later nights' rows, with what they superseded left out, are gathered into
    memory. The scalars are one chunk: taking hits from the load's many batches made every search
    slower (docs/benchmarks.md, "Why the constants are what they are")."""

    def __init__(self, path: Path, night: int | None = None):
        """The copy at `path` as served at `night` (None: a collection without nights)."""
        nights = range(FIRST_NIGHT, (night or FIRST_NIGHT) + 1)
        missing = [p for n in nights for p in (night_path(path, n), vectors_path(night_path(path, n)),
                                                *([superseded_path(path, n)] if n > FIRST_NIGHT else []))
                   if not p.exists()]
        if missing:
            raise IntegrityError(f"{missing[0]}: a file of the exact copy of night {night} is missing; "
                                 "run `vidx load --full` to rebuild the collection")
        superseded = {n: pa.ipc.open_file(pa.memory_map(str(superseded_path(path, n)))).read_all()[ROW_VERSION]
                      .combine_chunks() for n in nights if n > FIRST_NIGHT}
        tables, matrices, written = [], [], []
        for n in nights:
            rows, matrix = _night_rows(night_path(path, n))
            later = [superseded[m] for m in nights if m > n]
            if later:  # the night's rows that a later night superseded are not served
                kept = pc.invert(pc.is_in(rows[ROW_VERSION], pa.concat_arrays(later)))
                rows, matrix = rows.filter(kept), matrix[kept.to_numpy(zero_copy_only=False)]
            tables.append(rows)
            matrices.append(matrix)
            written.append(np.full(rows.num_rows, n, np.int64))
        rows = pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0].combine_chunks()
        # Each served row's version and the night that wrote it (a collection without nights has
        # neither): what the next night compares with its own rows.
        self.versions = rows[ROW_VERSION] if ROW_VERSION in rows.column_names else None
        self.written = np.concatenate(written) if self.versions is not None else None
        self.rows = rows.drop_columns([ROW_VERSION]) if self.versions is not None else rows
        self.matrix = np.concatenate(matrices) if len(matrices) > 1 else matrices[0]

    def positions(self, column: str, values: list) -> np.ndarray:
        """The rows whose `column` holds one of `values`, ascending."""
        return np.flatnonzero(pc.is_in(self.rows[column], pa.array(values)).to_numpy(zero_copy_only=False))

    def _scored(self, vector: np.ndarray, kept: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(positions, their inner products with `vector`): a product over the few rows a narrow
        filter keeps, else over every row."""
        vector = np.asarray(vector, np.float32)
        if kept is None:
            return np.arange(len(self.matrix)), self.matrix @ vector
        if len(kept) < GATHER_BELOW * len(self.matrix):
            return kept, self.matrix[kept] @ vector
        return kept, (self.matrix @ vector)[kept]

    def table(self, positions: np.ndarray, columns: list[str] | None, scores: np.ndarray | None = None) -> pa.Table:
        """The rows at `positions` (their `columns`, all when None), with `scores` as SCORE when given."""
        chosen = (self.rows if columns is None else self.rows.select(columns)).take(pa.array(positions, pa.int64()))
        return chosen if scores is None else chosen.append_column(SCORE, pa.array(scores.astype(np.float64)))

    def top_k(self, vector: np.ndarray, k: int, kept: np.ndarray | None = None,
              columns: list[str] | None = None) -> pa.Table:
        """The k best kept rows by inner product, best first (ties in row order), and every row tied
        with the k-th: which of them a LIMIT keeps is the relational step's to say."""
        positions, scores = self._scored(vector, kept)
        _, best = best_with_ties(scores[None, :], k)
        return self.table(positions[best], columns, scores[best])

    def top_groups(self, vector: np.ndarray, k: int, group: str, kept: np.ndarray | None = None,
                   columns: list[str] | None = None) -> pa.Table:
        """The best kept rows, best first, as many as hold the k best groups of `group` (a group
        ranked by its best row): k rows, then four times more until they hold k groups or every row.
        A group whose best row is not among them scores at most the last one, tied rows included."""
        positions, scores = self._scored(vector, kept)
        groups = self.rows[group].take(pa.array(positions, pa.int64())) if len(positions) else None
        fetch = k
        while True:
            _, best = best_with_ties(scores[None, :], fetch)
            if len(best) >= len(scores) or len(pc.unique(groups.take(pa.array(best)))) >= k:
                return self.table(positions[best], columns, scores[best])
            fetch *= 4

    def scan(self, vector: np.ndarray | None, kept: np.ndarray | None = None, columns: list[str] | None = None,
             scores: ScoreRange = ScoreRange()) -> pa.Table:
        """Every kept row, in row order; with a vector, each with its score, kept when within `scores`."""
        if vector is None:
            return self.table(np.arange(len(self.matrix)) if kept is None else kept, columns)
        positions, products = self._scored(vector, kept)
        within = scores.within(products)
        return self.table(positions[within], columns, products[within])

    def count(self, kept: np.ndarray | None = None) -> int:
        return len(self.matrix) if kept is None else len(kept)

"""Compaction: drop the rows no reader should see (superseded, deleted, duplicated), so that a plain
read of the dataset (pyarrow, DuckDB) sees what `read_live` sees.

Linear in the rows: the live mask is computed once over every part's small columns, the rows each
part loses are counted in one pass, and only parts that lose rows are read whole and rewritten.
A night that drops nothing reads no vectors, and no part the plan already read.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .dataset import PART_READERS, PartRows, filesystem, live_mask, read_part_rows, write_part
from storage.progress import Progress
from storage.schema import GROUP_COLUMN

# Bytes of parts (uncompressed) rewritten at once: each rewrite holds its part and the part it
# writes. Parts of 256 rows at D = 1024 (1 MB) go PART_READERS at a time; parts of 20,000 (80 MB)
# one or two.
REWRITE_BYTES = 256 << 20

logger = logging.getLogger(__name__)


def _rewrite(fs, path: str, keep: np.ndarray, directory: str, key_column: str) -> str | None:
    """Write the rows of the part at `path` that `keep` (a mask in file order) keeps as a new part,
    then delete the old one; the new part's path, None when nothing was kept."""
    written = None
    if keep.any():
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        written = write_part(table.filter(pa.array(keep)), directory, key_column)
    fs.rm(path)  # only after its surviving rows are safely in a new part
    return written


def compact(directory: str, wanted_video_ids: pa.Array | None, key_column: str,
            known: PartRows | None = None) -> tuple[dict[str, int], PartRows | None]:
    """Drop superseded, deleted and duplicated rows; parts with nothing to drop are untouched.
    `known`: the parts' small columns as the plan read them (only parts written since are read).
    Returns the stats, and the dataset's small columns after compaction (None when it is empty)."""
    columns = [*dict.fromkeys([key_column, GROUP_COLUMN[key_column]]), "run_id"]
    if known is not None and "status" in known.rows.column_names:  # kept for the load that follows
        columns.append("status")
    part_rows = read_part_rows(directory, columns, known)
    stats = {"parts_rewritten": 0, "parts_deleted": 0, "rows_dropped": 0}
    if part_rows is None:
        return stats, None
    keep = live_mask(part_rows.rows, wanted_video_ids, key_column).to_numpy(zero_copy_only=False)
    bounds = part_rows.bounds()
    kept_per_part = np.bincount(part_rows.rows["_part"].to_numpy(), weights=keep, minlength=len(part_rows.paths))
    losing = np.flatnonzero(kept_per_part < np.diff(bounds))
    stats["rows_dropped"] = int(part_rows.rows.num_rows - keep.sum())
    renamed: dict[int, str] = {}
    if len(losing):
        fs, _ = filesystem(directory)
        largest = max(part_rows.nbytes[i] for i in losing)
        workers = int(np.clip(REWRITE_BYTES // max(2 * largest, 1), 1, PART_READERS))
        with ThreadPoolExecutor(workers, thread_name_prefix="compact") as pool:
            written = pool.map(lambda i: _rewrite(fs, part_rows.paths[i], keep[bounds[i]:bounds[i + 1]], directory,
                                                  key_column), losing)
            progress = Progress(logger, f"compaction of {directory}: rewritten", len(losing), "parts that lose rows")
            for i, path in zip(losing, written):
                if path is None:
                    stats["parts_deleted"] += 1
                else:
                    renamed[i] = path
                    stats["parts_rewritten"] += 1
                progress.advance(1)
    deleted = np.zeros(len(part_rows.paths), bool)
    deleted[losing] = True
    deleted[list(renamed)] = False
    return stats, part_rows.parts(np.flatnonzero(~deleted), rows=keep, renamed=renamed)

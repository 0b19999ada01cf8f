"""The duplicates run: every pair of distinct videos at least as similar as a threshold, as Parquet
rows beside the index, and the groups those pairs join videos into.

The live video rows are read once, a block at a time, into Ray's object store. A Ray task then
compares one block with several: in a full run each block with itself and every block before it
(every pair of rows), in an incremental run each block of the videos to compare with every block.
`--method exact` multiplies the blocks; `--method ivf` first trains k-means cells on a sample of the
rows, makes each block a faiss IVF index over them, and compares a row only with the rows of its
`--probes` nearest cells (storage/table/duplicate_index.py); an incremental run with few rows to
compare multiplies them instead, which costs less than indexing the library. Every task keeps the
best pair of rows of each pair of videos (storage/table/duplicate_pairs.py): what comes back to the
driver grows with the pairs found, not with the rows.

Incremental (storage/table/duplicate_plan.py): videos new or re-encoded since the last run are
compared with the whole library, and the pairs of removed and re-encoded videos dropped; other
settings compare everything again; a run with nothing changed reads no vector and writes nothing
but its run record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from errors import IntegrityError, UserError
from storage.progress import Progress
from storage.schema import EMBEDDING, PAIR_KEY, VIDEO_KEY, pair_schema
from storage.table.compaction import compact
from storage.table.dataset import remove_temp_files, write_part
from storage.table.duplicate_index import cell_index, cells_for, probed, probed_rows, sample_rows, train_cells
from storage.table.duplicate_plan import (Library, pair_rows, pairs_directory, plan_duplicates, read_compared,
                                          read_library, read_stored_pairs, settings_of, write_compared,
                                          write_groups)
from storage.table.duplicate_pairs import Block, RowPairs, best_video_pairs, duplicate_groups, similar_rows
from storage.table.runs import new_run_id, write_run_record

from .cluster import connect
from .options import DuplicatesOptions

logger = logging.getLogger(__name__)

# Rows per block of --method exact: a product of two blocks at 1024-d is 34 GFLOP and a 64 MB score matrix.
ROWS_PER_BLOCK = 4096
# Rows per block of --method ivf: each query meets each block's cells once; larger blocks, fewer meetings
# (docs/benchmarks.md, "Near-duplicates"). 64 MB of vectors at 1024-d, and as much again in its index.
ROWS_PER_INDEXED_BLOCK = 16_384
# Rows per Parquet part of pairs (no vectors: ~100 bytes a row).
PAIR_ROWS_PER_PART = 65_536
# An incremental --method ivf run indexes the library only to compare more rows than this per cell of
# it: indexing costs about what multiplying that many rows with the library does (docs/benchmarks.md,
# "Near-duplicates").
INDEXED_ABOVE_ROWS_PER_CELL = 4
# Pairs of videos found, per video of the library, beyond which a threshold is refused as too low:
# the pairs come back to the driver, and a library is not mostly copies.
MAX_PAIRS_PER_VIDEO = 100


@ray.remote
def index_block(centroids: np.ndarray, block: Block) -> np.ndarray:
    return cell_index(centroids, block.vectors)


@ray.remote
def compare_exact(queries: Block, library: list[ray.ObjectRef], threshold: float,
                  codes: tuple[np.ndarray, np.ndarray]) -> RowPairs:
    """The best pair of rows of each pair of videos, one row in `queries` and one in a block of `library`."""
    found = [similar_rows(queries, ray.get(block), threshold) for block in library]
    return best_video_pairs(RowPairs.concat(found), *codes)


@ray.remote
def compare_probed(queries: Block, library: list[tuple[ray.ObjectRef, ray.ObjectRef]], centroids: np.ndarray,
                   probes: int, threshold: float, codes: tuple[np.ndarray, np.ndarray]) -> RowPairs:
    """compare_exact's pairs where a row of `queries` meets the rows of its `probes` nearest cells in
    each block of `library` (the block, and its index over the cells)."""
    cells = probed(centroids, queries, probes)
    found = [probed_rows(cells, ray.get(block), ray.get(index), threshold) for block, index in library]
    return best_video_pairs(RowPairs.concat(found), *codes)


def vector_blocks(library: Library, numbers: np.ndarray, size: int) -> Iterator[Block]:
    """The rows `numbers` (ascending) of `library` with their vectors, about `size` at a time."""
    live, done = replace(library.live, rows=library.live.rows.take(pa.array(numbers))), 0
    for batch in live.batches([VIDEO_KEY, EMBEDDING], size):
        rows = numbers[done:done + batch.num_rows]
        done += batch.num_rows
        if not pc.all(pc.equal(batch[VIDEO_KEY], library.rows[VIDEO_KEY].take(pa.array(rows)))).as_py():
            raise IntegrityError("the video rows were read in another order than they were listed")
        column = batch[EMBEDDING].combine_chunks()
        vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1).astype(np.float32)
        yield Block(vectors, rows, library.videos[rows], library.segments[rows])


@dataclass
class StoredLibrary:
    """The library's blocks in Ray's object store, and for --method ivf its cells and each block's
    index over them."""

    blocks: list[ray.ObjectRef]
    sizes: list[int]  # rows per block
    centroids: ray.ObjectRef | None
    indexes: list[ray.ObjectRef]
    detail: dict  # the method's figures, for the stats

    def compare(self, queries: ray.ObjectRef, blocks: range, options: DuplicatesOptions,
                codes: ray.ObjectRef) -> ray.ObjectRef:
        """A task comparing the block `queries` with blocks `blocks` of the library."""
        if self.centroids is None:
            return compare_exact.remote(queries, [self.blocks[i] for i in blocks], options.threshold, codes)
        return compare_probed.remote(queries, [(self.blocks[i], self.indexes[i]) for i in blocks], self.centroids,
                                     options.probes, options.threshold, codes)


def store_library(library: Library, cells: int) -> StoredLibrary:
    """The library's blocks in the object store; with `cells`, its index over that many cells."""
    n = library.rows.num_rows
    sampled, sample, blocks, sizes = sample_rows(n, cells) if cells else None, [], [], []
    for block in vector_blocks(library, np.arange(n), ROWS_PER_INDEXED_BLOCK if cells else ROWS_PER_BLOCK):
        blocks.append(ray.put(block))
        sizes.append(len(block.rows))
        if cells:
            sample.append(block.vectors[np.isin(block.rows, sampled)])
    if not cells:
        return StoredLibrary(blocks, sizes, None, [], {"method_used": "exact", "blocks": len(blocks)})
    started = time.perf_counter()
    centroids = ray.put(train_cells(np.concatenate(sample), cells))
    detail = {"method_used": "ivf", "blocks": len(blocks), "cells": cells, "sample_rows": len(sampled),
              "train_s": round(time.perf_counter() - started, 3)}
    return StoredLibrary(blocks, sizes, centroids, [index_block.remote(centroids, b) for b in blocks], detail)


def found_pairs(library: Library, compared: pa.Array, full: bool, options: DuplicatesOptions) -> tuple[RowPairs, dict]:
    """Every pair of videos, one of them in `compared` (all of them when `full`), scoring at least the
    threshold, as the best pair of their rows. As many tasks in flight as the cluster has CPUs."""
    connect(options.address)
    numbers = np.arange(library.rows.num_rows) if full else library.rows_of(compared)
    cells = cells_for(library.rows.num_rows) if options.method == "ivf" else 0
    stored = store_library(library, cells if full or len(numbers) > INDEXED_ABOVE_ROWS_PER_CELL * cells else 0)
    codes = ray.put((library.videos, library.segments))
    if full:  # block j against blocks 0..j, the largest first: no long task is left to run alone at the end
        work = ((stored.blocks[j], stored.sizes[j], range(j + 1)) for j in reversed(range(len(stored.blocks))))
    else:
        work = ((ray.put(block), len(block.rows), range(len(stored.blocks)))
                for block in vector_blocks(library, numbers, ROWS_PER_BLOCK))
    limit = MAX_PAIRS_PER_VIDEO * len(np.unique(library.videos))
    window = max(1, int(ray.cluster_resources().get("CPU", 1)))
    progress = Progress(logger, "duplicates: compared", len(numbers), "video rows")
    pending, sizes, results = [], {}, []

    def collect() -> None:
        nonlocal pending
        [ready], pending = ray.wait(pending, num_returns=1)
        results.append(ray.get(ready))
        found = sum(map(len, results))
        progress.advance(sizes.pop(ready), f"{found} pairs of videos")
        if found > limit:
            for task in pending:
                ray.cancel(task)
            raise UserError(f"--threshold {options.threshold:g} finds more than {limit} pairs of videos "
                            f"({MAX_PAIRS_PER_VIDEO} a video): raise it (docs/duplicates.md)")

    for queries, rows, blocks in work:
        pending.append(stored.compare(queries, blocks, options, codes))
        sizes[pending[-1]] = rows
        while len(pending) >= window:
            collect()
    while pending:
        collect()
    return best_video_pairs(RowPairs.concat(results), library.videos, library.segments), stored.detail


def run_duplicates(embeddings: str, options: DuplicatesOptions) -> dict:
    """Find every pair of videos of the index at EMBEDDINGS scoring at least `options.threshold`, and
    their groups, under EMBEDDINGS/duplicates; returns the run's stats."""
    started, root, run_id = time.perf_counter(), embeddings.rstrip("/"), new_run_id()
    library = read_library(root)
    model = library.live.model()
    settings = {"threshold": options.threshold, "method": options.method, "model": model["fingerprint"],
                **({"probes": options.probes} if options.method == "ivf" else {})}
    directory = pairs_directory(root)
    remove_temp_files(directory)
    stored = read_stored_pairs(directory)
    plan = plan_duplicates(library.rows, read_compared(root), settings, stored.live)
    plan_s = time.perf_counter() - started
    found, detail = RowPairs.concat([]), {}
    if len(plan.compared):
        found, detail = found_pairs(library, plan.compared, plan.full, options)
    compare_s = time.perf_counter() - started - plan_s
    rows = pair_rows(found, library.rows, model["fingerprint"], run_id, pair_schema(model, settings))
    for start in range(0, rows.num_rows, PAIR_ROWS_PER_PART):
        write_part(rows.slice(start, PAIR_ROWS_PER_PART), directory, PAIR_KEY)
    pairs = pa.concat_tables([table.select(["video_id", "duplicate_id"]) for table in (plan.kept, rows)],
                             promote_options="permissive")
    compaction = {"parts_rewritten": 0, "parts_deleted": 0, "rows_dropped": 0}
    if plan.changes:
        wanted = pa.concat_arrays([plan.kept[PAIR_KEY].combine_chunks(), rows[PAIR_KEY].combine_chunks()])
        compaction, _ = compact(directory, wanted, PAIR_KEY, known=stored.part_rows)
    groups = duplicate_groups(pairs)
    groups_written = write_groups(root, groups)
    if plan.changes:
        write_compared(root, library.rows, settings)
    compared = len(plan.compared)
    stats = {"videos": len(np.unique(library.videos)), "rows": library.rows.num_rows, "videos_compared": compared,
             "videos_removed": len(plan.removed), "pairs_found": len(found), "pairs_kept": plan.kept.num_rows,
             "pairs": pairs.num_rows, "pairs_dropped": compaction["rows_dropped"],
             "groups": len(pc.unique(groups["duplicate_group"])), "videos_in_groups": groups.num_rows,
             "groups_written": groups_written, **detail, "plan_s": round(plan_s, 3), "compare_s": round(compare_s, 3),
             "total_s": round(time.perf_counter() - started, 3),
             "rows_per_s": round(len(library.rows_of(plan.compared)) / compare_s, 1) if compared else 0.0}
    record = {"run_id": run_id, "command": "duplicates", "stats": stats, "compaction": compaction,
              "settings": settings, "config": {"embeddings": embeddings, **options.model_dump()}}
    stats["stats_file"] = write_run_record(root, run_id, record)
    return stats


def update_duplicates(embeddings: str, address: str | None = None) -> dict | None:
    """`vidx nightly`'s step: bring the duplicates of the index at EMBEDDINGS up to date with the
    settings of the last run (an incremental run; a new model compares everything again); None,
    and nothing done, when `vidx duplicates` never finished a run there."""
    compared = read_compared(embeddings.rstrip("/"))
    if compared is None:
        return None
    settings = settings_of(compared)
    options = DuplicatesOptions.of(threshold=settings["threshold"], method=settings["method"],
                                   **({"probes": settings["probes"]} if "probes" in settings else {}), address=address)
    return run_duplicates(embeddings, options)

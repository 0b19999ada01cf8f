"""vidx's own parts against a table format (Delta Lake through `deltalake`), on what a night does
at library scale: read every stored row's planning columns (a night with nothing to change), then
apply a 1 % night (1 % of the videos added, 1 % changed, 1 % deleted) and leave no dead row for a
plain reader.

Usage: python bench/table_formats.py [--rows 1000000] [--dim 256] [--work DIR] [--out table_formats.json]

The same rows both ways: one row per video, the planning columns the index keeps, a `genre` and a
unit vector of `--dim` floats. Delta writes them in one commit, in files of its own size (asked for
256 rows' bytes, delta-rs writes about 1,000 rows a file); vidx in parts of 256 rows (as `vidx
index` writes them) and again in parts of Delta's file size. Each way's step is timed in this process, on local
disk, in the same run. Delta's night is the idiomatic one: a MERGE that updates the changed videos
and inserts the new ones, then a MERGE that deletes the gone ones (delta-rs rewrites every file
holding a matched row: copy-on-write). vidx's is its own: new parts, then compaction. After the
night, the rows a plain Parquet reader (pyarrow, DuckDB's read_parquet) sees in each directory are
counted: Delta's replaced files stay until VACUUM, and only Delta readers skip them. Needs the
`bench` extra (deltalake).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.table.compaction import compact  # noqa: E402
from storage.table.dataset import list_parts, read_part_rows, write_part  # noqa: E402
from report import progress  # noqa: E402

ROWS_PER_PART = 256
PLAN_COLUMNS = ["key", "video_id", "uri", "file_stat", "model_fingerprint", "segment_seconds", "status",
                "error_kind", "run_id", "genre"]


def video_rows(ids: np.ndarray, run_id: str, dim: int, rng: np.random.Generator) -> pa.Table:
    vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    video_ids = [f"v{i:07d}" for i in ids]
    n = len(ids)
    return pa.table({
        "key": [f"{v}#0" for v in video_ids], "video_id": video_ids,
        "uri": [f"/library/{i // 1000:04d}/{i:07d}.mp4" for i in ids],
        "file_stat": [f"{i}:1733000000000000000" for i in ids], "model_fingerprint": ["tiny"] * n,
        "segment_seconds": pa.nulls(n, pa.float64()), "status": ["ok"] * n, "error_kind": pa.nulls(n, pa.string()),
        "run_id": [run_id] * n, "genre": ["library"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
    })


def timed(figures: dict, name: str, call):
    started = time.perf_counter()
    result = call()
    figures[name] = round(time.perf_counter() - started, 3)
    progress(f"{name}: {figures[name]:.2f} s")
    return result


def plain_read_rows(directory: Path) -> int:
    """Rows a reader that knows Parquet but not the table format sees (pyarrow, DuckDB's read_parquet)."""
    return ds.dataset(str(directory), format="parquet").count_rows()


def night_changes(n: int) -> dict[str, np.ndarray]:
    ids = np.arange(n)
    return {"changed": ids[ids % 100 == 3], "deleted": ids[ids % 100 == 2], "added": np.arange(n, n + n // 100)}


def vidx_way(base: pa.Table, changes: dict, dim: int, directory: Path, rows_per_part: int, figures: dict) -> None:
    """vidx's night with parts of `rows_per_part` rows; figures under vidx<rows_per_part>_..."""
    name = f"vidx{rows_per_part}"
    for start in range(0, base.num_rows, rows_per_part):
        write_part(base.slice(start, rows_per_part), str(directory), "key")
    figures[f"{name}_files"] = len(list_parts(str(directory)))
    timed(figures, f"{name}_noop_read_s", lambda: read_part_rows(str(directory), PLAN_COLUMNS))
    new = video_rows(np.concatenate([changes["changed"], changes["added"]]), "run-2", dim, np.random.default_rng(3))

    def write_new() -> None:
        for start in range(0, new.num_rows, rows_per_part):
            write_part(new.slice(start, rows_per_part), str(directory), "key")

    timed(figures, f"{name}_night_write_s", write_new)
    wanted = pa.array([f"v{i:07d}" for i in np.setdiff1d(np.arange(base.num_rows + len(changes["added"])),
                                                          changes["deleted"])])
    stats, _ = timed(figures, f"{name}_night_compact_s", lambda: compact(str(directory), wanted, "key"))
    figures[f"{name}_files_rewritten"] = stats["parts_rewritten"] + stats["parts_deleted"]
    figures[f"{name}_night_s"] = round(figures[f"{name}_night_write_s"] + figures[f"{name}_night_compact_s"], 3)
    figures[f"{name}_plain_read_rows_after_night"] = plain_read_rows(directory)


def delta_way(base: pa.Table, changes: dict, dim: int, directory: Path, figures: dict) -> None:
    from deltalake import DeltaTable, write_deltalake

    file_bytes = base.slice(0, ROWS_PER_PART).nbytes
    timed(figures, "delta_write_s", lambda: write_deltalake(str(directory), base, target_file_size=file_bytes))
    figures["delta_files"] = len(DeltaTable(str(directory)).file_uris())

    def noop_read() -> pa.Table:
        return DeltaTable(str(directory)).to_pyarrow_dataset().to_table(columns=PLAN_COLUMNS)

    timed(figures, "delta_noop_read_s", noop_read)
    new = video_rows(np.concatenate([changes["changed"], changes["added"]]), "run-2", dim, np.random.default_rng(3))

    def upsert() -> dict:
        return (DeltaTable(str(directory)).merge(new, predicate="t.video_id = s.video_id", source_alias="s",
                                                 target_alias="t")
                .when_matched_update_all().when_not_matched_insert_all().execute())

    def delete() -> dict:
        gone = pa.table({"video_id": [f"v{i:07d}" for i in changes["deleted"]]})
        return (DeltaTable(str(directory)).merge(gone, predicate="t.video_id = s.video_id", source_alias="s",
                                                 target_alias="t")
                .when_matched_delete().execute())

    upserted = timed(figures, "delta_night_upsert_s", upsert)
    deleted = timed(figures, "delta_night_delete_s", delete)
    figures["delta_files_rewritten"] = upserted.get("num_target_files_removed", 0) + deleted.get(
        "num_target_files_removed", 0)
    figures["delta_night_s"] = round(figures["delta_night_upsert_s"] + figures["delta_night_delete_s"], 3)
    timed(figures, "delta_noop_read_after_night_s", noop_read)
    figures["delta_rows_after_night"] = noop_read().num_rows
    figures["delta_plain_read_rows_after_night"] = plain_read_rows(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vidx-table-formats",
                        help="scratch directory, emptied first")
    parser.add_argument("--out", type=Path, default=Path("table_formats.json"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    base = video_rows(np.arange(args.rows), "run-1", args.dim, np.random.default_rng(1))
    changes = night_changes(args.rows)
    figures: dict = {"rows": args.rows, "dim": args.dim}
    delta_way(base, changes, args.dim, args.work / "delta", figures)
    # vidx as `vidx index` writes it, and with parts of Delta's file size (`--rows-per-part`)
    for rows_per_part in (ROWS_PER_PART, -(-args.rows // figures["delta_files"])):
        vidx_way(base, changes, args.dim, args.work / f"vidx{rows_per_part}", rows_per_part, figures)
    args.out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))
    shutil.rmtree(args.work)


if __name__ == "__main__":
    main()

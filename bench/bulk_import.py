"""A full build on a Milvus server: vidx's insert path against Milvus' own bulk import, the same rows
into the same server, in one run.

Usage: python bench/bulk_import.py [--rows 100000] [--dim 256] [--work DIR]

Clustered vectors (bench/query_latency.py) written as an index dataset. Then, one after the other
on one Milvus 2.3.5 standalone server: `insert`, the load's own full build
(storage/milvus/versions.py serve_rows with full: insert requests of 16 MB, two in flight, then
index, load and validation); and `import`, the same row versions (stored_rows.stored_batches)
written as one NumPy file per field where the server reads its storage (its local storage
directory here; a server's bucket elsewhere), imported by one bulk-insert task
(`utility.do_bulk_insert`), then indexed and loaded the same way. Each time is split: writing the
files or inserting, importing, indexing and loading. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "harness"), str(Path(__file__).resolve().parent)]

from query_latency import clustered_vectors, write_dataset  # noqa: E402
from servers import MilvusStandalone  # noqa: E402
from storage.milvus.nights import FIRST_NIGHT  # noqa: E402
from storage.milvus.store import VectorStore  # noqa: E402
from storage.milvus.stored_rows import stored_batches, stored_fields  # noqa: E402
from storage.milvus.versions import serve_rows  # noqa: E402
from storage.schema import EMBEDDING, ROW_VERSION  # noqa: E402
from storage.table.live_rows import scan_live  # noqa: E402
from report import progress  # noqa: E402


def numpy_columns(live, directory: Path) -> list[str]:
    """The row versions a full build stores, one .npy file per field (Milvus' column-based import)."""
    batches = list(stored_batches(live, None, FIRST_NIGHT))
    table = pa.concat_tables(batches)
    directory.mkdir(parents=True)
    files = []
    for name in table.column_names:
        column = table[name].combine_chunks()
        if name == EMBEDDING:
            values = column.flatten().to_numpy().reshape(len(column), -1)
        elif pa.types.is_string(column.type):
            values = np.array(column.to_pylist())
        elif pa.types.is_integer(column.type):  # Milvus' INT64 fields take int64 files only
            values = column.to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            values = column.to_numpy(zero_copy_only=False)
        np.save(directory / f"{name}.npy", values)
        files.append(str(directory / f"{name}.npy"))
    return files


def imported(store: VectorStore, uri: str, name: str, live, files_dir: Path) -> dict:
    from pymilvus import connections, utility

    dim = live.schema.field(EMBEDDING).type.list_size
    started = time.perf_counter()
    files = numpy_columns(live, files_dir)
    written = time.perf_counter()
    store.create_collection(name, ROW_VERSION, stored_fields(live, None), dim, {})
    connections.connect(alias="bench", uri=uri)
    task = utility.do_bulk_insert(name, files=files, using="bench")
    # "Persisted": the rows are in the server's storage; "Completed": in segments a search reads.
    while (state := utility.get_bulk_insert_state(task, using="bench")).state_name not in ("Completed", "Failed"):
        time.sleep(0.2)
    if state.state_name == "Failed":
        raise SystemExit(f"import failed: {state.infos}")
    imported_at = time.perf_counter()
    store.seal(name)
    count = store.count(name)
    if count != live.rows.num_rows:
        raise SystemExit(f"imported {count} rows of {live.rows.num_rows}")
    done = time.perf_counter()
    return {"rows": count, "write_files_s": round(written - started, 2), "import_s": round(imported_at - written, 2),
            "index_and_load_s": round(done - imported_at, 2), "total_s": round(done - started, 2),
            "rows_per_s": round(count / (done - started), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vidx_import_"))
    rng = np.random.default_rng(0)
    progress(f"writing {args.rows} x {args.dim} rows under {work} ...")
    write_dataset(clustered_vectors(args.rows, args.dim, rng), work / "index", rng)
    server = MilvusStandalone(work / "milvus")
    uri = server.start()
    out = {"rows": args.rows, "dim": args.dim}
    try:
        with VectorStore(uri) as store:
            live = scan_live(str(work / "index" / "videos"), status="ok")
            progress("insert path ...")
            built = serve_rows(store, live, "inserted", "v1", full=True)
            out["insert"] = {key: built[key] for key in ("rows", "seconds", "insert_rows_per_s", "index_s")}
            for name in store.versions("inserted"):
                store.drop(name)
            progress("bulk import ...")
            out["import"] = imported(store, uri, "imported_v1", live, work / "milvus" / "data" / "import")
    finally:
        server.stop()
    out["import_over_insert"] = round(out["import"]["total_s"] / out["insert"]["seconds"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

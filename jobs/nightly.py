"""incremental index -> tags -> duplicates -> load (the night's change, published at once) ->
retention, resumable, one run per workdir.

Killed at any point, the next run finishes the work: index parts are written atomically and
reused, a night is published only once validated (storage/milvus/night_publish.py), a collection
version built whole only once validated, and what an interrupted load left behind is retired.
Readers see the last night or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from errors import UserError
from storage.options import db_field

from .pipeline.options import IndexOptions

logger = logging.getLogger(__name__)

LOCK_FILE = ".nightly.lock"


class NightlyOptions(IndexOptions):
    # Versions kept per alias: the served one and the one before it, so a query that resolved the
    # alias just before the swap still finds its collection, and a bad night can be rolled back.
    keep: int = Field(2, ge=1, description="collection versions kept per alias")
    full: bool = Field(False, description="build every collection whole tonight, as a new version swapped in")


class Arguments(NightlyOptions):
    manifest: str = Field(..., description="tonight's manifest: the whole library as it should be served")
    workdir: str = Field(..., description="the index dataset kept between nights (local or fsspec URL)")
    db: str = db_field()


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
    """One nightly run per local workdir at a time: cron can start a night before the last ends."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, root = fsspec.core.url_to_fs(workdir)
    if not isinstance(fs, LocalFileSystem):
        yield  # object stores have no advisory locks; schedule one run at a time there
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another nightly run is working in {workdir}; wait for it to finish") from None
        yield


def duplicates_stats(duplicates: dict | None) -> dict | None:
    """What tonight's duplicates run did (None: `vidx duplicates` never ran on the workdir)."""
    keys = ("videos_compared", "videos_removed", "pairs_found", "pairs_dropped", "pairs", "groups",
            "groups_written", "total_s", "stats_file")
    return None if duplicates is None else {key: duplicates[key] for key in keys}


def night_stats(indexed: dict, loaded: dict, retired: dict, durations: dict) -> dict:
    return {
        "added": indexed["added"],
        "changed": indexed["changed"],
        "deleted": indexed["deleted"],
        "reused": indexed["reused"],
        "failed": indexed["rows_error"],
        "metadata_updated": indexed["metadata_updated"],
        "served": {alias: swap["collection"] for alias, swap in loaded.items()},
        "nights": {alias: swap["night"] for alias, swap in loaded.items()},
        "built": sorted(alias for alias, swap in loaded.items() if swap.get("built")),
        "unchanged": sorted(alias for alias, swap in loaded.items() if swap.get("unchanged")),
        "retired": retired,
        "durations": {k: round(v, 3) for k, v in durations.items()},
        "index_stats_file": indexed["stats_file"],
    }


def nightly(manifest: str, workdir: str, db: str, **options) -> dict:
    """Bring what `db` serves in line with `manifest`, re-encoding only what changed; the night's stats.
    `options`: NightlyOptions' (the index's, and `keep`)."""
    from storage.milvus.publish import publish_index, read_index
    from storage.milvus.store import VectorStore
    from storage.milvus.versions import retire_versions
    from storage.table.runs import new_run_id, write_run_record

    from .pipeline.duplicates_run import update_duplicates
    from .pipeline.index_run import run_index
    from .pipeline.tag_run import retag

    settings = NightlyOptions.of(**options)
    index_options = IndexOptions.of(**settings.model_dump(exclude={"keep", "full"}))
    run_id = new_run_id()
    durations, started = {}, time.perf_counter()
    with workdir_lock(workdir):
        indexed, tables_read = run_index(manifest, workdir, index_options)
        durations["index_s"] = time.perf_counter() - started
        step = time.perf_counter()
        tagged = retag(workdir, settings.address)
        durations["tag_s"] = time.perf_counter() - step
        step = time.perf_counter()
        duplicates = update_duplicates(workdir, settings.address)  # groups served by the load below
        durations["duplicates_s"] = time.perf_counter() - step
        step = time.perf_counter()
        index = read_index(workdir, known=tables_read)
        with VectorStore(db) as store:
            loaded = publish_index(store, index, full=settings.full)
            durations["load_s"] = time.perf_counter() - step
            step = time.perf_counter()
            retired = {alias: retire_versions(store, alias, settings.keep) for alias in loaded}
        durations["retire_s"] = time.perf_counter() - step
    durations["total_s"] = time.perf_counter() - started
    stats = {**night_stats(indexed, loaded, retired, durations), "tagged": tagged,
             "duplicates": duplicates_stats(duplicates)}
    record = {"run_id": run_id, "command": "nightly", "stats": stats,
              "config": {"manifest": str(manifest), "workdir": workdir, "db": db, **settings.model_dump()}}
    stats["stats_file"] = write_run_record(workdir, run_id, record)
    logger.info("night done: %s", {k: stats[k] for k in ("added", "changed", "deleted", "reused", "served")})
    return stats


def run(arguments: Arguments) -> dict:
    return nightly(**arguments.model_dump(exclude_unset=True, exclude={"db"}), db=arguments.db)

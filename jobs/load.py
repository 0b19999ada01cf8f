"""The load job: Parquet embeddings -> a new collection version, validated, then the alias swap.

Usage: python -m jobs load --embeddings DIR --db URI [--collection videos]
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.dataset import CAPTIONS, VIDEOS, read_live
from storage.runs import new_run_id
from storage.vectorstore import DIGEST_PROPERTY, MODEL_PROPERTY, PREVIOUS_PROPERTY, VectorStore, VectorStoreError

logger = logging.getLogger(__name__)

# Vectors read back after a load and compared with the Parquet rows they came from.
VALIDATION_SAMPLE = 64


def validate(store: VectorStore, name: str, table: pa.Table, key: str) -> None:
    """The new version holds every row, and a sample of its vectors reads back as written."""
    count = store.count(name)
    if count != table.num_rows:
        raise VectorStoreError(f"validation of {name}: {count} rows, expected {table.num_rows}")
    picks = np.linspace(0, table.num_rows - 1, num=min(VALIDATION_SAMPLE, table.num_rows), dtype=int)
    sample = table.take(pa.array(picks))
    stored = store.vectors(name, key, sample[key].to_pylist())
    for row_key, vector in zip(sample[key].to_pylist(), sample["embedding"].to_numpy(zero_copy_only=False)):
        if row_key not in stored or not np.allclose(stored[row_key], vector, atol=1e-6):
            raise VectorStoreError(f"validation of {name}: the vector of {row_key!r} does not read back")


def table_digest(table: pa.Table, key: str, model: dict) -> str:
    """What a load puts in a collection, in brief: every row's key and the run that wrote it (a new
    encoding or new metadata gets a new run id), and the model."""
    rows = table.select([key, "run_id"]).sort_by(key)
    digest = hashlib.blake2b(json.dumps(model, sort_keys=True).encode(), digest_size=16)
    for column in rows.columns:
        digest.update("\x1f".join(column.to_pylist()).encode())
    return digest.hexdigest()


def load_collection(store: VectorStore, table: pa.Table, alias: str, key: str, model: dict, version: str,
                    skip_unchanged: bool = False) -> dict:
    """Build `<alias>_<version>`, validate it, and only then move `alias` to it. With
    `skip_unchanged`, a served version holding exactly these rows stays and nothing is built."""
    name = f"{alias}_{version}"
    started = time.perf_counter()
    previous = store.alias_target(alias)
    digest = table_digest(table, key, model)
    if skip_unchanged and previous and store.properties(previous).get(DIGEST_PROPERTY) == digest:
        logger.info("%s: %s already holds these %d rows", alias, previous, table.num_rows)
        return {"collection": previous, "rows": table.num_rows, "previous": previous, "unchanged": True,
                "seconds": round(time.perf_counter() - started, 3)}
    store.build_version(name, table, key, {MODEL_PROPERTY: json.dumps(model, sort_keys=True),
                                           PREVIOUS_PROPERTY: previous or "", DIGEST_PROPERTY: digest})
    try:
        validate(store, name, table, key)
    except VectorStoreError:
        store.drop(name)  # the alias still points at the previous version
        raise
    store.swap_alias(alias, name)
    logger.info("%s -> %s (%d rows, was %s)", alias, name, table.num_rows, previous)
    return {"collection": name, "rows": table.num_rows, "previous": previous,
            "seconds": round(time.perf_counter() - started, 3)}


def _ok_rows(directory: str, key: str) -> pa.Table | None:
    rows = read_live(directory, key_column=key)
    if rows is not None and "status" in rows.column_names:
        rows = rows.filter(pc.equal(rows["status"], "ok"))
    return rows


def _model_of(table: pa.Table) -> dict:
    raw = table.schema.metadata or {}
    if b"vidx.model" not in raw:
        raise ValueError("the embeddings carry no model record (not written by vidx index?)")
    return json.loads(raw[b"vidx.model"])


def load(embeddings: str, db: str, collection: str = "videos", skip_unchanged: bool = False) -> dict:
    """Load OUTPUT/videos (and OUTPUT/captions when present) into `db`; returns what was swapped.
    `skip_unchanged`: keep a served version that already holds the same rows (see load_collection)."""
    videos = _ok_rows(f"{embeddings.rstrip('/')}/{VIDEOS}", "key")
    if videos is None or videos.num_rows == 0:
        raise ValueError(f"{embeddings}: no 'ok' video rows to load")
    store = VectorStore(db)
    version = new_run_id().replace("-", "_").lower()
    result = {"videos": load_collection(store, videos, collection, "key", _model_of(videos), version,
                                        skip_unchanged)}
    captions = _ok_rows(f"{embeddings.rstrip('/')}/{CAPTIONS}", "caption_id")
    if captions is not None and captions.num_rows:
        result["captions"] = load_collection(store, captions, "captions", "caption_id", _model_of(captions), version,
                                             skip_unchanged)
    return result

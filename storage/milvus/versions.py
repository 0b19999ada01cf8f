"""Versioned collections behind an alias: serve an index's live rows as a night of the collection
served (night_publish.py) or, when it cannot follow them (the first load, another model or
schema, or by choice), build a new version whole, validate it and swap the alias to it; retire old
versions; and what each version records in its `vidx.*` properties.

Readers resolve the alias per request, so they see the old version or the new one, never a
half-built one. Only what both engines do is relied on: the rows are de-duplicated here (a
server keeps duplicate primary keys where milvus-lite overwrites), properties are read back from
the collection, and a version is flushed, indexed and in memory before it is validated.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pyarrow as pa

from errors import IntegrityError, UserError

from storage.table.digests import rows_digest
from storage.table.live_rows import LiveRows
from storage.table.tag_columns import TagColumns
from storage.schema import (DIGEST_KEY, EMBEDDING, MODEL_KEY, NIGHT_BEFORE_KEY, NIGHT_KEY, NOT_SERVED, PREVIOUS_KEY,
                            ROW_VERSION, version_name)
from .fields import unstored_columns
from .night_publish import can_follow, publish_night, tonight_versions, validate
from .nights import FIRST_NIGHT
from .served_ledger import ServedLedger, ServedNight
from .store import VectorStore, VectorStoreError
from .stored_rows import check_storable, stored_fields, write_rows


logger = logging.getLogger(__name__)

# Vectors read back after a load and compared with the Parquet rows they came from.
VALIDATION_SAMPLE = 64


def build_version(store: VectorStore, name: str, live: LiveRows, properties: dict[str, str],
                  sample: set[str], tags: TagColumns | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Create collection `name` from the live rows (and the `tags` columns) as its first night, then
    flush, index and seal it (VectorStore.seal), writing its exact copy on milvus-lite. Returns the
    vectors of the `sample` keys as they were inserted, and the seconds spent inserting and indexing."""
    key = live.key_column
    check_storable(store, live)
    dim = live.schema.field(EMBEDDING).type.list_size
    if store.has(name):
        store.drop(name)  # a half-built version of an interrupted load
    store.create_collection(name, ROW_VERSION, stored_fields(live, tags), dim,
                            {**properties, NIGHT_KEY: str(FIRST_NIGHT), NIGHT_BEFORE_KEY: ""})
    started, inserted = time.perf_counter(), {}

    def sealed() -> None:
        inserted["s"] = time.perf_counter() - started
        store.seal(name)
    vectors = write_rows(store, store.insert, name, live, tags, FIRST_NIGHT, key, sample, sealed)
    return vectors, {"insert_s": inserted["s"], "index_s": time.perf_counter() - started - inserted["s"]}


def sample_keys(live: LiveRows) -> set[str]:
    picks = np.linspace(0, live.rows.num_rows - 1, num=min(VALIDATION_SAMPLE, live.rows.num_rows), dtype=int)
    return set(live.rows[live.key_column].take(pa.array(picks)).to_pylist())


def served_digest(live: LiveRows, tags: TagColumns | None, properties: dict[str, str]) -> str:
    """What a collection serving `live` holds, in brief (storage/table/digests.py): the same for the
    same rows, model, properties and tags."""
    return rows_digest(live.rows, live.key_column,
                       {**live.model(), **properties, **({"tags": tags.digest} if tags else {})})


def serve_rows(store: VectorStore, live: LiveRows, alias: str, version: str, full: bool = False,
               tags: TagColumns | None = None, properties: dict[str, str] | None = None,
               index_root: str | None = None) -> dict:
    """Serve the live rows (with the `tags` columns, and `properties` beside vidx's own) as `alias`:
    as a night of the collection it serves when that collection can follow them (night_publish.py:
    the work is the change), else as a new version built whole (`<alias>_<version>`) and swapped in.
    `full`: build whole whatever is served. `index_root`: the index the rows are of, where a server's
    served versions are recorded for the next night (served_ledger.py)."""
    ledger = ServedLedger(index_root, store.uri, alias) if index_root and not store.embedded else None
    properties = {**(properties or {}), MODEL_KEY: json.dumps(live.model(), sort_keys=True)}
    for field in unstored_columns(live.schema):
        if field.name not in NOT_SERVED:
            logger.warning("column %r (%s) is not stored in Milvus: no filterable type", field.name, field.type)
    served = store.describe(alias)
    if served is not None and not full:
        why_not = can_follow(served, live, tags, properties)
        if why_not is None:
            return publish_night(store, served, live, tags, served_digest(live, tags, properties), ledger)
        logger.info("%s: building a new version: %s", alias, why_not)
    return build_and_swap(store, live, alias, version, tags, properties, ledger)


def build_and_swap(store: VectorStore, live: LiveRows, alias: str, version: str, tags: TagColumns | None,
                   properties: dict[str, str], ledger: ServedLedger | None = None) -> dict:
    """Build `<alias>_<version>` from the live rows (with the `tags` columns and `properties`),
    validate it, and only then move `alias` to it (and record its row versions in `ledger`)."""
    name, rows = version_name(alias, version), live.rows.num_rows
    started = time.perf_counter()
    previous = store.alias_target(alias)
    properties = {**properties, PREVIOUS_KEY: previous or "", DIGEST_KEY: served_digest(live, tags, properties)}
    try:
        sample, seconds = build_version(store, name, live, properties, sample_keys(live), tags)
        validate(store, name, rows, sample, FIRST_NIGHT)
    except (VectorStoreError, IntegrityError, UserError):  # UserError: a part that cannot be read as it is
        if store.has(name):
            store.drop(name)  # the alias still points at the previous version
        raise
    store.swap_alias(alias, name)
    if ledger:
        ledger.write(ServedNight(name, FIRST_NIGHT, properties[DIGEST_KEY]), tonight_versions(live, tags))
    total = time.perf_counter() - started
    logger.info("%s -> %s (%d rows in %.1f s, was %s)", alias, name, rows, total, previous)
    return {"collection": name, "night": FIRST_NIGHT, "rows": rows, "previous": previous, "built": True,
            "seconds": round(total, 3), "rows_per_s": round(rows / total, 1),
            "insert_rows_per_s": round(rows / seconds["insert_s"], 1), "index_s": round(seconds["index_s"], 3)}


def retire_versions(store: VectorStore, alias: str, keep: int) -> list[str]:
    """Drop every version of `alias` but the served one and the keep-1 served before it; the
    leftovers of interrupted or failed loads were never served, so they always go."""
    kept, name = [], store.alias_target(alias)
    while name and len(kept) < keep and store.has(name):
        kept.append(name)
        name = store.properties(name).get(PREVIOUS_KEY)
    retired = [name for name in store.versions(alias) if name not in kept]
    for name in retired:
        store.drop(name)
    return retired

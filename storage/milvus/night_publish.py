"""A night of a served collection: tonight's live rows compared with the row versions it serves,
and only the difference written (nights.py says which rows a reader sees).

Night N+1 of a collection serving night N:
1. tonight's row versions (keys, runs, tags) from the Parquet table's small columns; the versions
   served at N (the exact copy's on milvus-lite; on a server, those the last load recorded beside
   the index, served_ledger.py, else a scan of one column); and what an interrupted night N+1 left
   behind (versions written at N+1, or superseded at N+1);
2. upserts the new versions (written at N+1, their vectors read from the Parquet parts holding
   them) and the served versions tonight drops (superseded at N+1, read back from the copy or the
   collection); an interrupted night's versions tonight serves again go back to LIVE, and those it
   wrote that tonight does not serve are deleted;
3. on milvus-lite the copy's files of night N+1; then the rows served at N+1 are counted;
4. publishes N+1, and the timestamp of its last write, in one property write (N stays one write
   away: roll_back), records tonight's versions beside the index (a server), then deletes the
   versions that neither N nor N+1 serves (retention).
Killed anywhere before 4, the collection still serves N, and the next night redoes it all from
what the collection holds, to the same rows a full build would serve.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from errors import IntegrityError, UserError
from storage.progress import Progress
from storage.schema import (CORPORA_KEY, DIGEST_KEY, EMBEDDING, MODEL_KEY, NIGHT_BEFORE_KEY, NIGHT_FROM, NIGHT_KEY,
                            NIGHT_TO, NIGHT_TS_KEY, ROW_VERSION, VIDEOS_KEY)
from storage.table.live_rows import LiveRows
from storage.table.tag_columns import TagColumns

from .exact_copy import ExactCopy
from .fields import stored_schema
from .filters import is_in
from .nights import LIVE, night_before, night_written_at, row_versions, served_night, visible
from .served_ledger import ServedLedger, ServedNight
from .store import LATEST, VectorStore
from .stored_rows import INSERT_BYTES, SERVER_INSERTS_IN_FLIGHT, inserted_batches, stored_fields, write_rows

logger = logging.getLogger(__name__)

# Row versions named in one request (reading rows back, deleting them): the filter names each.
VERSIONS_PER_REQUEST = 4096
# Row versions a scan of the version column reads per request (a short string each; Milvus
# returns at most 16,384 rows a query).
VERSIONS_SCANNED = 16_384
# New rows whose vectors are read back after the night, and compared with the Parquet rows.
NIGHT_SAMPLE = 16
# Properties every night of a collection shares: an index that records others is built whole.
FOLLOWED_PROPERTIES = (MODEL_KEY, CORPORA_KEY, VIDEOS_KEY)


def can_follow(description: dict, live: LiveRows, tags: TagColumns | None, properties: dict[str, str]) -> str | None:
    """Why the collection `description` describes cannot take `live` as a night (None: it can):
    rows without nights, another model, other fields (a manifest's new column, a new corpus of tags)."""
    served = description.get("properties", {})
    if served_night(served) is None:
        return "its rows carry no nights (loaded by an earlier vidx)"
    for key in FOLLOWED_PROPERTIES:
        if served.get(key, "") != properties.get(key, ""):
            return f"its {key} differs from the index's"
    fields = {field["name"]: field for field in description["fields"]}
    wanted = {name: args["datatype"] for name, args in stored_fields(live, tags)}
    have = {name: field["type"] for name, field in fields.items() if name not in (ROW_VERSION, EMBEDDING)}
    if have != wanted:
        return f"its fields differ from the index's columns ({sorted(set(have) ^ set(wanted)) or 'their types'})"
    if fields[EMBEDDING].get("params", {}).get("dim") != live.schema.field(EMBEDDING).type.list_size:
        return "its vectors have another dimension"
    return None


def tonight_versions(live: LiveRows, tags: TagColumns | None) -> pa.Array:
    """The version of each live row (nights.row_versions), in the order of live.rows."""
    rows = tags.attach(live.rows) if tags else live.rows
    return row_versions(rows, live.key_column, [field.name for field in tags.fields] if tags else [])


class NightWrites:
    """A night's writes to one collection, and the timestamp of the latest (nights.night_written_at)."""

    def __init__(self, store: VectorStore, name: str):
        self.store, self.name, self.latest = store, name, 0
        self._lock = threading.Lock()

    def _written(self, timestamp: int) -> int:
        with self._lock:
            self.latest = max(self.latest, timestamp)
        return timestamp

    def upsert(self, name: str, rows: pa.Table) -> int:
        """VectorStore.upsert, as inserted_batches calls a write."""
        return self._written(self.store.upsert(name, rows))

    def delete(self, condition: str) -> int:
        return self._written(self.store.delete(self.name, condition))


def served_versions(store: VectorStore, name: str, night: int, copy: ExactCopy | None, recorded: pa.Array | None,
                    as_of: int | None) -> pa.Array:
    """The row versions the collection serves at `night` (written by `as_of`, a Milvus timestamp):
    its exact copy's, else those `recorded` beside the index, else a scan."""
    if copy is not None:
        return copy.versions
    if recorded is not None:
        return recorded
    logger.info("%s: reading the served row versions back (no record of them beside the index)", name)
    scan = store.scan(name, visible(night), pa.schema([(ROW_VERSION, pa.string())]), as_of=as_of,
                      batch_size=VERSIONS_SCANNED)
    return scan.reader.read_all()[ROW_VERSION].combine_chunks()


def interrupted_night(store: VectorStore, name: str, night: int) -> pa.Table:
    """The row versions an interrupted (or rolled back) night after `night` wrote or superseded:
    (ROW_VERSION, NIGHT_FROM, NIGHT_TO)."""
    condition = f"{NIGHT_FROM} > {night} or ({NIGHT_TO} > {night} and {NIGHT_TO} < {LIVE})"
    columns = pa.schema([(ROW_VERSION, pa.string()), (NIGHT_FROM, pa.int64()), (NIGHT_TO, pa.int64())])
    return store.scan(name, condition, columns, as_of=LATEST, batch_size=VERSIONS_SCANNED).reader.read_all()


def _copy_rows(copy: ExactCopy, versions: pa.Array) -> pa.Table:
    """The copy's rows of `versions`, as stored (LIVE: the copy holds served rows only)."""
    positions = np.flatnonzero(pc.is_in(copy.versions, versions).to_numpy(zero_copy_only=False))
    rows = copy.table(positions, None)
    dim = copy.matrix.shape[1]
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(copy.matrix[positions].ravel()), dim)
    return (rows.add_column(0, ROW_VERSION, copy.versions.take(pa.array(positions)))
            .append_column(NIGHT_FROM, pa.array(copy.written[positions]))
            .append_column(NIGHT_TO, pa.array(np.full(len(positions), LIVE, np.int64)))
            .append_column(EMBEDDING, vectors))


def stored_rows(store: VectorStore, name: str, description: dict, copy: ExactCopy | None,
                versions: pa.Array, as_of: int | None) -> Iterator[pa.Table]:
    """The stored rows of `versions` (every field; written by `as_of`, a Milvus timestamp), about
    INSERT_BYTES of vectors at a time."""
    schema = stored_schema(description)
    per_request = min(VERSIONS_PER_REQUEST, max(1, INSERT_BYTES // (4 * schema.field(EMBEDDING).type.list_size)))
    for start in range(0, len(versions), per_request):
        chunk = versions.slice(start, per_request)
        if copy is not None:
            yield _copy_rows(copy, chunk).select(schema.names)
        else:
            rows = store.query(name, filter=is_in(ROW_VERSION, chunk.to_pylist()), output_fields=["*"], as_of=as_of)
            yield pa.Table.from_pylist(rows, schema=schema)


def _superseded_at(rows: pa.Table, night: int) -> pa.Table:
    return rows.set_column(rows.schema.get_field_index(NIGHT_TO), NIGHT_TO,
                           pa.array(np.full(rows.num_rows, night, np.int64)))


def _delete(writes: NightWrites, versions: pa.Array) -> None:
    for start in range(0, len(versions), VERSIONS_PER_REQUEST):
        writes.delete(is_in(ROW_VERSION, versions.slice(start, VERSIONS_PER_REQUEST).to_pylist()))


def validate(store: VectorStore, name: str, expected_rows: int, sample: dict[str, np.ndarray], night: int) -> None:
    """The collection stores `expected_rows` row versions (of every night it keeps: milvus-lite
    counts under a filter by evaluating it row by row in Python, and counts them all at once), and
    a sample of the row versions served at `night` reads back as written (looked up by primary key,
    which milvus-lite answers without visiting every row)."""
    count = store.count(name)
    if count != expected_rows:
        raise IntegrityError(f"validation of {name} (night {night}): {count} rows, expected {expected_rows}")
    stored = store.stored_versions(name, sorted(sample), [NIGHT_FROM, NIGHT_TO, EMBEDDING])
    for version, vector in sample.items():
        row = stored.get(version)
        served = row is not None and row[NIGHT_FROM] <= night < row[NIGHT_TO]
        if not served or not np.allclose(row[EMBEDDING], vector, atol=1e-6):
            raise IntegrityError(f"validation of {name} (night {night}): row version {version!r} does not read back")


def publish_night(store: VectorStore, description: dict, live: LiveRows, tags: TagColumns | None,
                  digest: str, ledger: ServedLedger | None = None) -> dict:
    """Serve `live` (with the `tags` columns) as the next night of the collection `description`
    describes, writing what changed; what was written. `digest`: what the night serves, in brief
    (a night serving the same rows writes nothing). `ledger`: where the versions a server serves are
    recorded (served_ledger.py; milvus-lite's exact copy holds them)."""
    name, properties = description["collection_name"], description.get("properties", {})
    served, night, started = served_night(properties), served_night(properties) + 1, time.perf_counter()
    summary = {"collection": name, "rows": live.rows.num_rows, "previous": name, "built": False}
    if properties.get(DIGEST_KEY) == digest:
        logger.info("%s already serves these %d rows (night %d)", name, live.rows.num_rows, served)
        return {**summary, "night": served, "unchanged": True, "seconds": round(time.perf_counter() - started, 3)}
    copy, served_as_of = store.exact_copy(name, served), night_written_at(properties)
    stored_before = store.count(name)
    tonight = tonight_versions(live, tags)
    recorded = ledger.read(ServedNight(name, served, properties.get(DIGEST_KEY, ""))) if ledger else None
    serving = served_versions(store, name, served, copy, recorded, served_as_of)
    left = interrupted_night(store, name, served)
    is_new = pc.invert(pc.is_in(tonight, serving))
    gone = serving.filter(pc.invert(pc.is_in(serving, tonight)))
    written_after = pc.greater(left[NIGHT_FROM], served)
    tonight_left = pc.is_in(left[ROW_VERSION], tonight)
    stale = left.filter(pc.and_(written_after, pc.invert(tonight_left)))[ROW_VERSION]
    revived = left.filter(pc.and_(pc.invert(written_after), tonight_left))[ROW_VERSION]
    already_stored = pc.sum(pc.and_(written_after, tonight_left)).as_py() or 0  # upserted again, not added
    new_rows = replace(live, rows=live.rows.filter(is_new))
    logger.info("%s: night %d: %d new row versions, %d superseded, %d left by an interrupted night",
                name, night, new_rows.rows.num_rows, len(gone), left.num_rows)

    writes = NightWrites(store, name)
    _delete(writes, stale.combine_chunks())
    sample = set(pc.filter(tonight, is_new).slice(0, NIGHT_SAMPLE).to_pylist())
    vectors = write_rows(store, writes.upsert, name, new_rows, tags, night, ROW_VERSION, sample)
    # The next rows are read back while the last are written.
    in_flight = 1 if store.is_lite else SERVER_INSERTS_IN_FLIGHT
    superseded = (_superseded_at(rows, night)
                  for rows in stored_rows(store, name, description, copy, gone, served_as_of))
    revived_rows = (_superseded_at(rows, LIVE)
                    for rows in stored_rows(store, name, description, copy, revived.combine_chunks(), LATEST))
    progress = Progress(logger, f"{name}: night {night}: rows superseded", len(gone) + len(revived), "rows")
    for rows in inserted_batches(writes.upsert, name, itertools.chain(superseded, revived_rows), in_flight):
        progress.advance(rows.num_rows)
    store.copy_night(name, night, gone, wrote_rows=new_rows.rows.num_rows > 0)
    validate(store, name, stored_before - len(stale) + new_rows.rows.num_rows - already_stored, vectors, night)
    store.set_properties(name, {NIGHT_KEY: str(night), NIGHT_BEFORE_KEY: str(served), DIGEST_KEY: digest,
                                NIGHT_TS_KEY: str(writes.latest or "")})
    if ledger:
        ledger.write(ServedNight(name, night, digest), tonight)
    store.delete(name, f"{NIGHT_TO} <= {served}")  # retention: versions neither night serves
    seconds = time.perf_counter() - started
    logger.info("%s: night %d served (%d rows: %d new, %d superseded, in %.1f s)", name, night,
                live.rows.num_rows, new_rows.rows.num_rows, len(gone), seconds)
    return {**summary, "night": night, "added": new_rows.rows.num_rows, "superseded": len(gone),
            "seconds": round(seconds, 3)}


def roll_back(store: VectorStore, alias: str) -> dict:
    """Serve the night before the one `alias` serves, in one property write; refused when there is
    none kept (a collection just built, or one rolled back already)."""
    description = store.described(alias)
    name, properties = description["collection_name"], description.get("properties", {})
    before = night_before(properties)
    if before is None:
        raise UserError(f"{alias}: no earlier night is kept to roll back to (night {served_night(properties)} "
                        "is the first since the collection was built, or was rolled back to)")
    # The digest goes: the next night compares its rows with those served, whatever they are.
    store.set_properties(name, {NIGHT_KEY: str(before), NIGHT_BEFORE_KEY: "", DIGEST_KEY: ""})
    logger.info("%s: night %d served again (was %s)", name, before, properties.get(NIGHT_KEY))
    return {"collection": name, "night": before, "rolled_back": int(properties[NIGHT_KEY])}

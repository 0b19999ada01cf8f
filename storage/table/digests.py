"""Digests of rows by their keys and the runs that wrote them: a part's name, and what a load serves.

Both hash the same facts (each row's key and run id) for one purpose: the same rows give the same
digest, so a retried write lands on the same part and a load that would serve the same rows again
can be skipped.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

# Keys joined a slice at a time (a library's keys are millions of strings).
SLICE = 65_536
SEPARATOR = b"\x1f"


def part_name(table: pa.Table, key_column: str) -> str:
    """A part named by its rows (keys and run), so writing the same rows again lands on the same file."""
    digest = hashlib.blake2b(digest_size=12)
    for key in sorted(table[key_column].to_pylist()):
        digest.update(key.encode() + b"\0")
    digest.update(table["run_id"][0].as_py().encode() if table.num_rows else b"")
    return f"part-{digest.hexdigest()}.parquet"


def rows_digest(rows: pa.Table, key: str, context: dict) -> str:
    """What a load puts in a collection, in brief: every row's key and the run that wrote it (a new
    encoding or new metadata gets a new run id), and `context` (the model, properties, tags)."""
    return columns_digest(rows, [key, "run_id"], context)


def columns_digest(rows: pa.Table, columns: list[str], context: dict) -> str:
    """A digest of the string `columns` of `rows` in the order of the first (a key), and `context`."""
    rows = rows.select(columns).sort_by(columns[0])
    digest = hashlib.blake2b(json.dumps(context, sort_keys=True).encode(), digest_size=16)
    for column in rows.columns:
        # Joined a slice at a time, with the separator between slices: the bytes of one join.
        for start in range(0, len(column), SLICE):
            text = SEPARATOR.decode().join(column.slice(start, SLICE).to_pylist()).encode()
            digest.update((SEPARATOR if start else b"") + text)
    return digest.hexdigest()

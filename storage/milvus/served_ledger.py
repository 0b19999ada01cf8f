"""The row versions a collection on a Milvus server serves, recorded beside the index it serves.

A night compares tonight's row versions with those served (night_publish.py). On milvus-lite the
exact copy holds them; on a server, reading them back is a scan of every row's version, O(library)
where the rest of a night is O(change). So each load that publishes a night on a server records
tonight's versions here, one file per database and alias, and the next night reads them instead.
A record is a cache, never the truth: it is used only when it names the collection, night and digest
the collection's properties name (a rollback or a load the record missed does not match), and a
night without one scans.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import pyarrow as pa

from storage.schema import ROW_VERSION
from storage.table.atomic import publish_table, read_published_table

logger = logging.getLogger(__name__)

SERVED = "served"
SERVED_KEY = "vidx.served"


@dataclass(frozen=True)
class ServedNight:
    """A collection's state as its properties name it: which night of which rows."""

    collection: str
    night: int
    digest: str


@dataclass(frozen=True)
class ServedLedger:
    """Where the versions that alias `alias` of database `db` serves are recorded, under the index
    at `root`."""

    root: str
    db: str
    alias: str

    @property
    def directory(self) -> str:
        return f"{self.root.rstrip('/')}/{SERVED}"

    @property
    def name(self) -> str:
        return f"{self.alias}.{hashlib.blake2b(self.db.encode(), digest_size=8).hexdigest()}.parquet"

    def read(self, served: ServedNight) -> pa.Array | None:
        """The versions recorded for `served`; None when the record is of another state, or missing."""
        try:
            table = read_published_table(f"{self.directory}/{self.name}")
        except (OSError, pa.ArrowInvalid) as error:
            logger.warning("%s: the record of served rows is unreadable (%s): scanning the collection",
                           self.alias, error)
            return None
        if table is None or ServedNight(**json.loads(table.schema.metadata[SERVED_KEY.encode()])) != served:
            return None
        return table[ROW_VERSION].combine_chunks()

    def write(self, served: ServedNight, versions: pa.Array) -> None:
        """Record `versions` as what `served` serves. A failure (a read-only index) costs the next
        night a scan, not this one's load."""
        table = pa.table({ROW_VERSION: versions}).replace_schema_metadata(
            {SERVED_KEY: json.dumps(served.__dict__, sort_keys=True)})
        try:
            publish_table(self.directory, self.name, table)
        except OSError as error:
            logger.warning("%s: could not record the served rows beside the index (%s): the next night scans",
                           self.alias, error)

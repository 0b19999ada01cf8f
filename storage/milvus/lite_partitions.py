"""Where milvus-lite keeps a collection's rows: in partitions filled one after another, each of at
most PARTITION_BYTES of vectors, so that a load merges none of milvus-lite's data files.

milvus-lite holds every data file it has written in memory, and merges a partition's files in the
background once it holds 4 of a size, re-reading the merged file while it still holds the files
it replaces. Spread over partitions as they arrived (milvus-lite's 16 partition-key buckets), the
rows filled every partition alike: late in a load all of them merged in the same round, and the
process held about two copies of the library for a moment (9.2 GB at 10^6 x 1024). Filled in
turn, only the partition being filled takes files, and one of PARTITION_BYTES takes two or three
of milvus-lite's flushes (32 MB, storage/milvus/lite.py): too few to merge (docs/benchmarks.md,
"The embedded default").

A primary key is one row across partitions in milvus-lite (the latest write wins), so an upsert
goes to the partition being filled like any insert. A server sizes and merges its own segments.
"""

from __future__ import annotations

import threading

from pymilvus import MilvusClient

# Bytes of vectors in one partition: 16,384 rows at 1024-d. Twice that, a partition took 4 flushes
# and merged them: a 3 x 10^5 x 1024 load peaked at 2.8 GB instead of 2.3 GB (docs/benchmarks.md).
PARTITION_BYTES = 64 << 20
PARTITION_PREFIX = "rows_"


def partition_name(number: int) -> str:
    return f"{PARTITION_PREFIX}{number:05d}"


class FilledPartitions:
    """The partition each write to a milvus-lite collection goes to: the last one, while it holds
    less than PARTITION_BYTES of vectors, else a new one after it."""

    def __init__(self, client: MilvusClient):
        self.client = client
        self._last: dict[str, tuple[int, int]] = {}  # collection -> (its last partition's number, rows in it)
        self._lock = threading.Lock()

    def forget(self, name: str) -> None:
        """Collection `name` was dropped or created: ask the database again."""
        with self._lock:
            self._last.pop(name, None)

    def for_rows(self, name: str, rows: int, dim: int) -> str:
        """The partition of collection `name` to write `rows` rows of `dim`-d vectors to (created
        when new)."""
        with self._lock:
            number, held = self._last[name] if name in self._last else self._stored_last(name)
            if held and held + rows > PARTITION_BYTES // (4 * dim):
                number, held = number + 1, 0
                self.client.create_partition(name, partition_name(number))
            self._last[name] = (number, held + rows)
            return partition_name(number)

    def _stored_last(self, name: str) -> tuple[int, int]:
        """The last partition the database holds, and its rows; the first, created, for a collection
        without any."""
        numbers = [int(p[len(PARTITION_PREFIX):]) for p in self.client.list_partitions(name)
                   if p.startswith(PARTITION_PREFIX)]
        if not numbers:
            self.client.create_partition(name, partition_name(0))
            return 0, 0
        last = max(numbers)
        return last, self.client.get_partition_stats(name, partition_name(last))["row_count"]

"""A Ray Data Datasink that writes embedding rows as atomic, deterministically named Parquet parts."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink

from storage.schema import EMBEDDING
from storage.table.dataset import ROWS_PER_PART, conform, write_part

# Per-row numbers the steps attach for the run's stats; not stored.
TIMING_COLUMNS = ("decode_seconds", "encode_seconds")
# Per-row Ray node ids the steps attach: the stats count rows per node and step; not stored.
NODE_COLUMNS = {"decode_node": "decoded_on", "encode_node": "encoded_on"}


class PartsDatasink(Datasink):
    """Each write task turns its rows into one part in the dataset's schema.

    Columns of the manifest (metadata) are taken from `manifest` by the `_row` each row carries,
    so their types never pass through Python conversions.
    """

    def __init__(self, directory: str, schema: pa.Schema, key_column: str, constants: dict,
                 manifest: pa.Table | None = None, rows_per_part: int = ROWS_PER_PART):
        self.directory, self.schema, self.key_column = directory, schema, key_column
        self.constants = constants  # schema.RUN_COLUMNS: the same for every row of the run
        # In the object store once, not pickled into every write task.
        self.manifest = ray.put(manifest) if manifest is not None else None
        self.rows_per_part = rows_per_part
        self.stats: Counter = Counter()

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_part

    def _to_schema(self, block: pa.Table) -> pa.Table:
        """The rows in the dataset's schema: stored embeddings, manifest metadata, run id."""
        n = block.num_rows
        valid = np.asarray(block["status"].to_pylist()) == "ok" if "status" in block.column_names else np.ones(n, bool)
        columns = {name: block[name] for name in block.column_names}
        columns.update({name: pa.array([value] * n, pa.string()) for name, value in self.constants.items()})
        embedding = block[EMBEDDING]
        columns[EMBEDDING] = pc.if_else(pa.array(valid), embedding, pa.nulls(n, embedding.type))  # error rows: null
        if self.manifest is not None:
            taken = ray.get(self.manifest).take(block["_row"])
            columns.update({name: taken[name] for name in taken.column_names})
        return conform(columns, n, self.schema)

    def write(self, blocks: Iterable[Block], ctx) -> dict:
        # Blocks are cast one by one: numpy batches type an all-missing column as float.
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return {}
        block = pa.concat_tables([self._to_schema(t) for t in tables])
        timings = {c: sum(pc.sum(t[c]).as_py() or 0.0 for t in tables if c in t.column_names) for c in TIMING_COLUMNS}
        write_part(block, self.directory, self.key_column)
        stats = Counter({"rows": block.num_rows})
        if "status" in block.column_names:
            stats.update(f"status_{s}" for s in block["status"].to_pylist())
            stats.update(f"error_{k}" for k in block["error_kind"].drop_null().to_pylist())
            stats["frames"] = int(pc.sum(block["sampled_frames"]).as_py() or 0)
        for column, step in NODE_COLUMNS.items():
            stats.update(f"{step}:{node}" for t in tables if column in t.column_names for node in t[column].to_pylist())
        stats.update(timings)
        return dict(stats)

    def on_write_complete(self, write_result) -> None:
        for returned in write_result.write_returns:
            self.stats.update(returned or {})

"""Small embeddings datasets written as vidx writes them: parts of rows with unit vectors, a run
id and a model record in the footer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage.table.dataset import write_part

DIM = 16
MODEL = {"spec": {"name": "tiny"}, "fingerprint": "a"}


def embeddings_table(n: int, seed: int = 0, run_id: str = "run-1", genres=("news", "sport"), model=MODEL) -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pa.table({
        "key": [f"v{i}#0" for i in range(n)],
        "video_id": [f"v{i}" for i in range(n)],
        "duration_s": rng.uniform(1, 60, n),
        "segment_seconds": pa.nulls(n, pa.float64()),  # whole videos
        "status": ["ok"] * n,
        "error": pa.nulls(n, pa.string()),
        "run_id": [run_id] * n,
        "genre": rng.choice(list(genres), n).tolist(),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
    })
    return table.replace_schema_metadata({b"vidx.model": json.dumps(model).encode()})


def write(directory: Path, *tables: pa.Table) -> str:
    for table in tables:
        write_part(table, str(directory), "key")
    return str(directory)

"""A generated index for query tests: a few thousand segment rows with metadata, as `vidx index`
writes them (Parquet parts with the model in their footers), ready for `vidx load`.

The vectors are unit length, as embeddings are (HNSW over inner products of other vectors misses
rows), with four components of ±1/2 and the rest 0: every inner product is a multiple of 1/4,
exact in float32 and float64 alike, so milvus-lite's copy, a Milvus server and DuckDB compute the
same scores, and ties between scores are real ties, as a library of near-duplicate clips has.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from storage.table.dataset import write_part
from storage.schema import MODEL_KEY, VIDEO_KEY, row_key

DIM = 16
NONZERO = 4  # components of ±1/2 in each vector: unit length
CHANNELS = [f"c{i}" for i in range(20)]
KINDS = ["news", "sport", "music", "talk"]
MODEL = {"spec": {"name": "generated"}, "fingerprint": "generated"}
ROWS_PER_PART = 500


def generated_rows(videos: int = 600, seed: int = 0) -> pa.Table:
    """Each video 1-8 segments of 2 s; per video a channel, a kind, a view count and a live flag."""
    rng = np.random.default_rng(seed)
    segments = rng.integers(1, 9, videos)
    video = np.repeat(np.arange(videos), segments)
    segment = np.concatenate([np.arange(n) for n in segments])
    n = len(video)
    vectors = np.zeros((n, DIM), np.float32)
    for row in vectors:
        row[rng.choice(DIM, NONZERO, replace=False)] = rng.choice([-0.5, 0.5], NONZERO)
    return pa.table({
        VIDEO_KEY: [row_key(f"v{v}", s) for v, s in zip(video, segment)],
        "video_id": [f"v{v}" for v in video],
        "segment": pa.array(segment, pa.int64()),
        "start_s": segment * 2.0,
        "end_s": segment * 2.0 + 2.0,
        "duration_s": (segments * 2.0)[video],
        "channel": [CHANNELS[i] for i in rng.integers(0, len(CHANNELS), videos)[video]],
        "kind": [KINDS[i] for i in rng.integers(0, len(KINDS), videos)[video]],
        "views": pa.array(rng.integers(0, 1000, videos)[video], pa.int64()),
        "live": pa.array(rng.random(videos)[video] < 0.3),
        "status": ["ok"] * n,
        "run_id": ["generated"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
    }).replace_schema_metadata({MODEL_KEY.encode(): json.dumps(MODEL).encode()})


def write_index(directory: Path, rows: pa.Table) -> Path:
    """`rows` as an index run's videos/ parts under `directory` (what `vidx load --embeddings` takes)."""
    for start in range(0, rows.num_rows, ROWS_PER_PART):
        write_part(rows.slice(start, ROWS_PER_PART), str(directory / "videos"), VIDEO_KEY)
    return directory

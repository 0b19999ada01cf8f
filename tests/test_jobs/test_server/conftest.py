"""What the server tests share: the served library's videos."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="module")
def library(loaded) -> list[dict]:
    """The served rows of segment 0, one per video."""
    output, _ = loaded
    rows = pq.read_table(output / "videos").to_pylist()
    return sorted((r for r in rows if r["status"] == "ok" and r["segment"] == 0), key=lambda r: r["video_id"])

"""A small index, loaded into milvus-lite once for the query-side tests."""

from __future__ import annotations

import pytest

from jobs.index import index
from jobs.load import load
from jobs.synth import synth


@pytest.fixture(scope="session")
def loaded(tmp_path_factory, local_ray) -> tuple:
    """(index output directory, milvus-lite path) of 12 synth videos in 2 s segments, tiny model."""
    work = tmp_path_factory.mktemp("served")
    manifest = synth(work / "synth", n=12, seed=11)
    index(str(manifest), str(work / "index"), model="tiny", segment_seconds=2.0)
    load(str(work / "index"), str(work / "vidx.db"))
    return work / "index", str(work / "vidx.db")

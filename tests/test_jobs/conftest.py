"""A small index, loaded once into each engine (milvus-lite and a Milvus server) for the query-side tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.index import index
from jobs.load import load
from jobs.synth import synth


@pytest.fixture(scope="session")
def served_index(tmp_path_factory, local_ray) -> Path:
    """Index output of 12 synth videos in 2 s segments, tiny model."""
    work = tmp_path_factory.mktemp("served")
    manifest = synth(work / "synth", n=12, seed=11)
    index(str(manifest), str(work / "index"), model="tiny", segment_seconds=2.0)
    return work / "index"


@pytest.fixture(scope="session")
def lite_db(served_index) -> str:
    db = str(served_index.parent / "vidx.db")
    load(str(served_index), db)
    return db


@pytest.fixture(scope="session")
def server_db_loaded(served_index, milvus_server) -> str:
    from servers import server_database

    db = server_database(milvus_server, "served")
    load(str(served_index), db)
    return db


@pytest.fixture(scope="session", params=["milvus-lite", "milvus-server"])
def loaded(request, served_index) -> tuple:
    """(index output directory, database URI): the same index loaded into each engine."""
    return served_index, request.getfixturevalue("lite_db" if request.param == "milvus-lite" else "server_db_loaded")

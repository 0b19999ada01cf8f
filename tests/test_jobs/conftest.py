"""A small index, loaded once into each engine (milvus-lite and a Milvus server) for the query-side
tests, and copies of it that the texts and tag tests add corpora and tags to. These fixtures serve
the tests of tests/test_jobs/ and of its subdirectories (test_pipeline/, test_server/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from corpora import FORMATS, PHRASES, write_corpus
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


@pytest.fixture(scope="module")
def index_copy(served_index, tmp_path_factory) -> Path:
    """The session's index (12 synth videos in 2 s segments, tiny model), copied: a module's tests
    add corpora and tags to it."""
    copy = tmp_path_factory.mktemp("tagged") / "index"
    shutil.copytree(served_index, copy)
    return copy


@pytest.fixture(scope="session")
def corpus_index(served_index, tmp_path_factory) -> Path:
    """A copy of the session's index with corpus `vocab` (tagged, top 2) and `served_FORMAT`, the
    same phrases from each file format."""
    from jobs.tag import tag
    from jobs.texts import texts

    directory = tmp_path_factory.mktemp("vocab")
    index = directory / "index"
    shutil.copytree(served_index, index)
    texts(str(write_corpus(directory, "parquet", PHRASES).rename(directory / "vocab.parquet")), str(index))
    for fmt in FORMATS:
        texts(str(write_corpus(directory, fmt, PHRASES)), str(index), name=f"served_{fmt}")
    tag(str(index), "vocab", top_k=2)
    return index


@pytest.fixture(scope="session", params=["milvus-lite", "milvus-server"])
def served_corpus(request, corpus_index, tmp_path_factory) -> tuple[Path, str]:
    """corpus_index loaded into each engine: (index, database URI)."""
    if request.param == "milvus-lite":
        db = str(tmp_path_factory.mktemp("lite") / "vidx.db")
    else:
        from servers import server_database

        db = server_database(request.getfixturevalue("milvus_server"), "texts_and_tags")
    load(str(corpus_index), db)
    return corpus_index, db

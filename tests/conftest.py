"""Shared test fixtures: real video files made with PyAV, the tiny random-weight model, a local Ray,
and the vector databases: milvus-lite and a real Milvus server.

A test that starts a Ray cluster or a server (through these fixtures, or on its own: such modules
mark themselves) is marked `slow`; `make test-fast` runs the others."""

from __future__ import annotations

import re

import pytest

from media import GOOD_VIDEOS, make_bad_files, make_video

# Fixtures that start a Ray cluster or a server process.
HEAVY_FIXTURES = {"local_ray", "milvus_server", "server_db", "s3"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        params = item.callspec.params.values() if hasattr(item, "callspec") else ()
        if HEAVY_FIXTURES & set(item.fixturenames) or "milvus-server" in params:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def good_videos(tmp_path_factory) -> dict:
    """name -> path of each good video in media.GOOD_VIDEOS."""
    directory = tmp_path_factory.mktemp("good_videos")
    return {spec.name: make_video(directory, spec) for spec in GOOD_VIDEOS}


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory) -> dict:
    """kind -> path of an unusable input (empty, garbage, truncated, image, missing...)."""
    return make_bad_files(tmp_path_factory.mktemp("bad_files"))


@pytest.fixture(scope="session")
def tiny_model():
    from encoders import create_model

    return create_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def local_ray():
    """One real local Ray for the in-process job tests (2 CPUs, as this machine has). Started, never
    joined: a cluster `ray start` left on this machine (its address file) is not this session's.
    Its workers' and raylet's logs stay in its session directory: relayed to this process they would
    land in the stderr a test reads as the command's (a raylet's "disk over 95% full" did, on CI)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", configure_logging=False,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory) -> str:
    """URI of a real Milvus server (2.3.5 standalone, the `milvus` package), one per session."""
    from servers import MilvusStandalone

    server = MilvusStandalone(tmp_path_factory.mktemp("milvus_server"))
    yield server.start()
    server.stop()


@pytest.fixture
def server_db(milvus_server, request) -> str:
    """A database of its own on the session's Milvus server, for one test, dropped after it."""
    from servers import drop_database, server_database

    uri = server_database(milvus_server, re.sub(r"\W", "_", request.node.name)[:60])
    yield uri
    drop_database(uri)


@pytest.fixture(params=["milvus-lite", "milvus-server"])
def db(request, tmp_path) -> str:
    """An empty vector database on each engine: a milvus-lite directory, then a Milvus server."""
    if request.param == "milvus-lite":
        return str(tmp_path / "vidx.db")
    return request.getfixturevalue("server_db")


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> dict:
    """An S3-compatible server (moto) on a free local port. The standard AWS variables point this
    process at it; the fixture's value is those variables, for subprocesses and Ray nodes."""
    from object_store import aws_environment, start_moto_server

    process, endpoint = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    env = aws_environment(endpoint)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env
    process.terminate()
    process.wait(timeout=30)

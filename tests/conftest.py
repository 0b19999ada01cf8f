"""Shared test fixtures: real video files made with PyAV, and the tiny random-weight model."""

from __future__ import annotations

import os

import pytest

from media import GOOD_VIDEOS, make_bad_files, make_video


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
    from encoders import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def local_ray():
    """One real local Ray for the in-process job tests (2 CPUs, as this machine has)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """URI of a Milvus server on a local port (`milvus-lite server`), for the `--db http://...` path."""
    from servers import start_milvus_server

    process, uri = start_milvus_server(tmp_path_factory.mktemp("milvus_server") / "data")
    yield uri
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> dict:
    """An S3-compatible server (moto) on a free local port. The standard AWS variables point this
    process at it; the fixture's value is those variables, for subprocesses and Ray nodes."""
    from object_store import aws_environment, start_moto_server

    process, endpoint = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    env = aws_environment(endpoint)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    process.terminate()
    process.wait(timeout=30)

"""The index job survives a killed driver, Ctrl-C and a killed embedder actor: every video once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.__main__ import main
from jobs.synth import synth
from storage.table.atomic import TEMP_PREFIX
from processes import kill_group, job_processes, wait_for

pytestmark = pytest.mark.slow
VIDEOS = 40


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return synth(tmp_path_factory.mktemp("synth"), n=VIDEOS, seed=3)


def start_index(manifest: Path, output: Path) -> subprocess.Popen:
    """The job in its own process group, so the test can clean up every Ray process it started.
    Its log goes to a file beside the output (a pipe nobody reads could fill and stall it)."""
    command = [sys.executable, "-m", "jobs", "index", "--model", "tiny", "--manifest", str(manifest),
               "--output", str(output), "--batch-size", "2", "--rows-per-part", "2"]
    log = open(output.parent / "index.log", "w")  # noqa: SIM115 (the child keeps its own descriptor)
    return subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=log, text=True)


def parts(output: Path) -> dict[str, float]:
    directory = output / "videos"
    return {p.name: p.stat().st_mtime_ns for p in directory.glob("part-*.parquet")} if directory.exists() else {}


def assert_every_video_once(output: Path) -> None:
    table = pq.read_table(output / "videos")
    keys = table["key"].to_pylist()
    assert len(keys) == len(set(keys)) == VIDEOS
    assert set(table["status"].to_pylist()) == {"ok"}
    assert not list((output / "videos").glob(f"{TEMP_PREFIX}*"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_driver_stopped_mid_run_then_rerun_completes_without_rewriting_finished_parts(
        manifest, tmp_path, local_ray, sig, capsys):
    output = tmp_path / "out"
    job = start_index(manifest, output)
    try:
        wait_for(lambda: len(parts(output)) >= 2)
        os.kill(job.pid, sig)
        if sig == signal.SIGINT:
            job.wait(timeout=60)
    finally:
        kill_group(job)
    finished = parts(output)
    assert 0 < len(finished) < VIDEOS // 2, "the job should have been stopped mid-run"

    assert main(["index", "--model", "tiny", "--manifest", str(manifest), "--output", str(output)]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["reused"] >= 2 * len(finished) and stats["encoded"] == VIDEOS - stats["reused"]
    after = parts(output)
    assert all(after.get(name) == mtime for name, mtime in finished.items()), "a finished part was rewritten"
    assert_every_video_once(output)


def _encoder_actor_pids(job: subprocess.Popen) -> list[int]:
    pids = []
    for pid in job_processes(job):
        try:
            if b"MapBatches(VideoEmbedder)" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def test_killed_encoder_actor_is_replaced_and_every_video_is_written_once(manifest, tmp_path):
    output = tmp_path / "out"
    job = start_index(manifest, output)
    try:
        [actor] = wait_for(lambda: _encoder_actor_pids(job))
        wait_for(lambda: len(parts(output)) >= 1)
        os.kill(actor, signal.SIGKILL)
        killed_with = len(parts(output))
        out, _ = job.communicate(timeout=300)
    finally:
        kill_group(job)
    assert job.returncode == 0, (tmp_path / "index.log").read_text()[-3000:]
    assert killed_with < VIDEOS // 2, "the actor should have been killed mid-run"
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["rows_ok"] == VIDEOS and stats["rows_error"] == 0
    assert_every_video_once(output)

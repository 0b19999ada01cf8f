"""The train job: a short run learns and writes official checkpoints; a killed run resumes; the shipped demo model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders import create_model
from encoders.checkpoint import to_official_keys
from encoders.video import decode_video
from jobs.synth import synth
from jobs.train import train
from processes import kill_group, wait_for

pytestmark = pytest.mark.slow
EPOCHS = 4


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return synth(tmp_path_factory.mktemp("synth"), n=12, seed=21)


@pytest.fixture(scope="module")
def trained(manifest, bad_files, tmp_path_factory, local_ray) -> tuple[Path, dict]:
    """A short run on the 12 synth videos, plus a broken file and a video without captions."""
    work = tmp_path_factory.mktemp("train")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows += [{"uri": str(bad_files["garbage"]), "video_id": "broken", "captions": ["a broken file"]},
             {**rows[0], "video_id": "uncaptioned", "captions": []}]
    (work / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = work / "out"
    return output, train(str(work / "manifest.jsonl"), str(output), init="tiny", epochs=EPOCHS, batch_size=6)


def read_loss(output: Path) -> list[dict]:
    with open(output / "loss.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_short_run_lowers_the_loss_and_records_the_curve(trained):
    output, stats = trained
    assert stats["videos"] == 12 and stats["epochs"] == EPOCHS and stats["videos_without_captions"] == 1
    assert [error["video_id"] for error in stats["errors"]] == ["broken"] and stats["decode_errors"] == 1
    assert stats["epoch_loss"][-1] < stats["epoch_loss"][0]
    assert json.loads((output / "stats.json").read_text()) == stats
    rows = read_loss(output)
    assert [int(row["step"]) for row in rows] == list(range(1, stats["steps"] + 1)) and stats["steps"] == 2 * EPOCHS
    assert (output / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_epoch_writes_an_official_checkpoint_that_load_model_reads(trained):
    output, _ = trained
    tiny = create_model("tiny", device="cpu")
    official_names = set(to_official_keys(tiny.module.state_dict()))
    for epoch in range(EPOCHS):
        state = torch.load(output / f"pytorch_model.bin.{epoch}", map_location="cpu", weights_only=True)
        assert set(state) == official_names
    model = create_model("clip2video", checkpoint=output / f"pytorch_model.bin.{EPOCHS - 1}", device="cpu")
    assert model.dim == tiny.dim and model.image_size == tiny.image_size
    captions = ["a red circle moves to the left"]
    assert np.abs(model.encode_text(captions) - tiny.encode_text(captions)).max() > 1e-3, "weights did not change"


def start_training(manifest: Path, output: Path, epochs: int) -> subprocess.Popen:
    """train() in its own process group (so the test can stop every Ray process it starts)."""
    code = f"from jobs.train import train; train({str(manifest)!r}, {str(output)!r}, epochs={epochs}, batch_size=3)"
    log = open(output.parent / "train.log", "w")  # noqa: SIM115 (the child keeps its own descriptor)
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=log, stderr=log)


def test_killed_run_resumes_from_its_last_checkpoint(manifest, tmp_path, local_ray):
    output, epochs = tmp_path / "out", 6
    job = start_training(manifest, output, epochs)
    try:
        wait_for(lambda: (output / "pytorch_model.bin.0").exists(), timeout=180)
    finally:
        kill_group(job)
    assert not (output / "stats.json").exists(), "the run should have been killed mid-way"
    before = read_loss(output)
    done = int(before[-1]["epoch"]) + 1
    assert done < epochs

    stats = train(str(manifest), str(output), epochs=epochs, batch_size=3)
    assert stats["resumed_at_epoch"] >= done and stats["epochs"] == epochs
    after = read_loss(output)
    assert after[: len(before)] == before, "the epochs before the kill were trained again"
    assert [int(row["step"]) for row in after] == list(range(1, 4 * epochs + 1))
    assert sorted({int(row["epoch"]) for row in after}) == list(range(epochs))


def test_demo_model_loads_offline_and_finds_held_out_synth_videos(tmp_path):
    """Seed 5 was never used to train the demo model; chance is 1 in 8."""
    model = create_model("demo", device="cpu")
    rows = [json.loads(line) for line in synth(tmp_path, n=8, seed=5).read_text().splitlines()]
    clips = [decode_video(row["uri"], model.sampling, model.image_size)[1][0].frames for row in rows]
    similarity = model.encode_text([row["captions"][0] for row in rows]) @ model.encode_clips(clips).T
    found = np.mean(similarity.argmax(axis=1) == np.arange(len(rows)))
    assert found >= 0.5, f"R@1 {found:.2f} on full captions"

"""`--seek keyframe` on the index job: its rows say which frame times were used, and the two
modes never mix in one dataset (the mode is part of the model fingerprint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from jobs.__main__ import main


def run(capsys, *args: str) -> dict:
    assert main(["index", "--model", "tiny", *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def rows(output: Path) -> dict:
    table = pq.read_table(output / "videos")
    return {r["key"]: r for r in table.to_pylist()}


def test_keyframe_rows_record_the_keyframe_times_and_switching_mode_re_encodes(good_videos, bad_files, tmp_path,
                                                                               local_ray, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"uri": str(p)}) + "\n" for p in
                                (good_videos["long_gop"], good_videos["h264"], bad_files["truncated"])))
    output = tmp_path / "out"
    run(capsys, "--manifest", str(manifest), "--output", str(output), "--segment-seconds", "2")
    exact = rows(output)
    stats = run(capsys, "--manifest", str(manifest), "--output", str(output), "--segment-seconds", "2",
                "--seek", "keyframe")
    assert stats["encoded"] == 3 and stats["reused"] == 0  # another fingerprint: nothing reused
    keyframe = rows(output)
    assert exact.keys() == keyframe.keys()
    for key, row in keyframe.items():
        assert row["model_fingerprint"] != exact[key]["model_fingerprint"]
        if row["status"] == "error":
            assert row["sampled_times"] == [] and row["error"]
            continue
        assert row["sampled_frames"] == len(row["sampled_times"]) == len(exact[key]["sampled_times"])
        np.testing.assert_allclose(exact[key]["sampled_times"][0], row["start_s"], atol=0.05)
    # long_gop: 5 s at 30 fps with keyframes at frames 0, 32, 64, 96 and 128
    key_times = {round(i / 30, 6) for i in (0, 32, 64, 96, 128)}
    long_gop = [row for key, row in keyframe.items() if key.startswith("long_gop")]
    assert len(long_gop) == 3 and all({round(t, 6) for t in row["sampled_times"]} <= key_times for row in long_gop)
    record = json.loads((output / "runs" / f"{stats['stats_file'].rsplit('/', 1)[-1]}").read_text())
    assert record["config"]["seek"] == "keyframe"
    assert record["model"]["spec"]["sampling"] == {"seek": "keyframe"}
    assert run(capsys, "--manifest", str(manifest), "--output", str(output), "--segment-seconds", "2",
               "--seek", "keyframe")["encoded"] == 0  # same mode again: incremental

"""`vidx synth`: procedural sample videos with captions and a manifest."""

from __future__ import annotations

import json

from encoders import SamplingCfg
from encoders.video import decode_video
from jobs.__main__ import main


def test_synth_writes_decodable_videos_and_a_manifest_with_captions(tmp_path):
    assert main(["synth", "--out", str(tmp_path), "--n", "3", "--seed", "7"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        info, [segment] = decode_video(row["uri"], SamplingCfg(), 32)
        assert info.duration_s > 4.5 and len(segment.frames) == 12
        assert row["captions"][0].startswith(f"a {row['colour']} {row['shape']} moves")
        assert row["captions"][1].startswith("something moves")

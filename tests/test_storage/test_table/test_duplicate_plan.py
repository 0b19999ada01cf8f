"""The plan of an incremental duplicates run (storage/table/duplicate_plan.py): which videos to compare
with the library, which stored pairs stay, against the record of the rows last compared and its
settings; and the groups file, written only when the groups change. Real Parquet under tmp_path."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from storage.schema import DUPLICATING_KEY
from storage.table.duplicate_pairs import duplicate_groups
from storage.table.duplicate_plan import plan_duplicates, read_groups, write_compared, write_groups

SETTINGS = {"threshold": 0.5, "method": "exact", "model": "m"}


def videos(*rows: tuple[str, str]) -> pa.Table:
    return pa.table({"video_id": [v for v, _ in rows], "run_id": [r for _, r in rows]})


def stored_pairs(*pairs: tuple[str, str]) -> pa.Table:
    return pa.table({"pair_key": [f"{a}#{b}" for a, b in pairs], "video_id": [a for a, _ in pairs],
                     "duplicate_id": [b for _, b in pairs], "run_id": ["d1"] * len(pairs)})


def compared(tmp_path, rows: pa.Table, settings: dict = SETTINGS) -> pa.Table:
    write_compared(str(tmp_path), rows, settings)
    return pq.read_table(tmp_path / "duplicates" / "compared.parquet")


LIBRARY = videos(("a", "r1"), ("a", "r1"), ("b", "r1"), ("c", "r1"))  # video a in two segments
STORED = stored_pairs(("a", "b"), ("b", "c"))


def test_a_run_with_nothing_stored_or_other_settings_compares_every_video(tmp_path):
    plan = plan_duplicates(LIBRARY, None, SETTINGS, STORED.slice(0, 0))
    assert plan.full and sorted(plan.compared.to_pylist()) == ["a", "b", "c"] and plan.kept.num_rows == 0
    record = compared(tmp_path, LIBRARY, {**SETTINGS, "threshold": 0.6})
    assert json.loads(record.schema.metadata[DUPLICATING_KEY.encode()])["threshold"] == 0.6
    assert plan_duplicates(LIBRARY, record, SETTINGS, STORED).full


def test_nothing_changed_compares_nothing_and_keeps_every_pair(tmp_path):
    plan = plan_duplicates(LIBRARY, compared(tmp_path, LIBRARY), SETTINGS, STORED)
    assert not plan.changes and len(plan.compared) == 0 and plan.kept.equals(STORED)


def test_new_and_re_encoded_videos_are_compared_and_pairs_of_gone_videos_dropped(tmp_path):
    record = compared(tmp_path, LIBRARY)
    now = videos(("a", "r1"), ("a", "r1"), ("b", "r2"), ("d", "r2"))  # b re-encoded, c removed, d new
    plan = plan_duplicates(now, record, SETTINGS, STORED)
    assert plan.changes and not plan.full
    assert sorted(plan.compared.to_pylist()) == ["b", "d"] and plan.removed.to_pylist() == ["c"]
    assert plan.kept.num_rows == 0  # (a, b): b re-encoded; (b, c): both
    only_new = plan_duplicates(videos(*[(v, "r1") for v in "aabc"], ("e", "r3")), record, SETTINGS, STORED)
    assert only_new.compared.to_pylist() == ["e"] and only_new.kept.equals(STORED)


def test_groups_are_written_only_when_they_change(tmp_path):
    groups = duplicate_groups(pa.table({"video_id": ["a"], "duplicate_id": ["b"]}))
    assert write_groups(str(tmp_path), groups)
    assert not write_groups(str(tmp_path), groups)
    assert read_groups(str(tmp_path)).to_pylist() == groups.to_pylist()
    assert write_groups(str(tmp_path), duplicate_groups(pa.table({"video_id": ["a"], "duplicate_id": ["c"]})))

"""Runs (storage/table/runs.py): run ids sort by the time their run started and never collide (the
newest run's rows win by them), and each run's record is OUTPUT/runs/<id>.json, published whole."""

from __future__ import annotations

import datetime
import json
import os
import random
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from storage.table import atomic, runs
from storage.table.dataset import read_live, write_part
from storage.table.runs import new_run_id, write_run_record

UTC = datetime.timezone.utc
STARTS = [datetime.datetime(2025, 12, 31, 23, 59, 59, 999_999, UTC), datetime.datetime(2026, 1, 1, tzinfo=UTC),
          datetime.datetime(2026, 1, 1, 0, 0, 0, 1, UTC), datetime.datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
          datetime.datetime(2026, 1, 9, 12, tzinfo=UTC), datetime.datetime(2026, 1, 10, 9, tzinfo=UTC),
          datetime.datetime(2026, 10, 1, tzinfo=UTC), datetime.datetime(2100, 1, 1, tzinfo=UTC)]


@pytest.fixture
def clock(monkeypatch) -> list[datetime.datetime]:
    """The start times new_run_id reads, in the order given (append to it before each call)."""
    times: list[datetime.datetime] = []

    class Clock(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return times.pop(0)

    monkeypatch.setattr(runs, "datetime", SimpleNamespace(datetime=Clock, timezone=datetime.timezone))
    return times


def test_run_ids_sort_by_start_time(clock):
    clock.extend(STARTS)
    ids = [new_run_id() for _ in STARTS]
    shuffled = random.Random(0).sample(ids, len(ids))
    assert sorted(shuffled) == ids


def test_runs_started_at_once_get_different_ids_that_still_sort_after_earlier_runs(clock):
    clock.extend([STARTS[0]] + [STARTS[1]] * 50)
    earlier, *together = [new_run_id() for _ in range(51)]
    assert len(set(together)) == 50 and all(earlier < run_id for run_id in together)


def test_the_rows_of_the_run_that_started_last_are_the_live_ones(tmp_path, clock):
    clock.extend(STARTS[1:3])  # a microsecond apart
    first, second = new_run_id(), new_run_id()
    for run_id, genre in ((second, "new"), (first, "old")):  # written in either order
        write_part(pa.table({"key": ["a#0"], "video_id": ["a"], "run_id": [run_id], "genre": [genre]}),
                   str(tmp_path), "key")
    assert read_live(str(tmp_path))["genre"].to_pylist() == ["new"]


def test_a_run_record_is_written_as_output_runs_id_json(tmp_path):
    run_id = new_run_id()
    path = write_run_record(str(tmp_path / "index") + "/", run_id,
                            {"stats": {"rows_ok": 3}, "started": STARTS[0], "output": tmp_path})
    assert path == str(tmp_path / "index" / "runs" / f"{run_id}.json")
    assert json.loads(Path(path).read_text()) == {"output": str(tmp_path), "started": str(STARTS[0]),
                                                  "stats": {"rows_ok": 3}}  # what JSON lacks, as text
    assert os.listdir(tmp_path / "index" / "runs") == [f"{run_id}.json"]


def test_a_run_record_that_fails_to_publish_leaves_nothing(tmp_path, monkeypatch):
    def fails(source, destination):
        raise OSError("No space left on device")

    monkeypatch.setattr(atomic.os, "replace", fails)
    with pytest.raises(OSError):
        write_run_record(str(tmp_path), new_run_id(), {"stats": {}})
    assert os.listdir(tmp_path / "runs") == []

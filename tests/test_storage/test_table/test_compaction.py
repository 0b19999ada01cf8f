"""Compaction: what a plain read of the dataset sees afterwards, which parts it reads and rewrites,
and what an interrupted compaction leaves for the next one."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from embeddings import embeddings_table, write
from storage.table import dataset
from storage.table.compaction import compact
from storage.table.dataset import list_parts, read_live, read_part_rows, write_part

SMALL_COLUMNS = ["key", "video_id", "run_id", "status"]


def plain_read(directory: str) -> pa.Table:
    """What pyarrow (or DuckDB) sees of the dataset, knowing nothing of runs."""
    return ds.dataset(directory, format="parquet").to_table().select(["key", "run_id", "genre"]).sort_by("key")


def live(directory: str) -> pa.Table:
    return read_live(directory).select(["key", "run_id", "genre"]).sort_by("key")


@pytest.fixture
def library(tmp_path) -> str:
    """30 videos in 3 parts of run-1, then videos 0-4 again in run-2 (superseding 5 rows of the first part)."""
    first = embeddings_table(30, run_id="run-1")
    directory = write(tmp_path / "videos", first.slice(0, 10), first.slice(10, 10), first.slice(20, 10))
    write_part(embeddings_table(5, seed=3, run_id="run-2"), directory, "key")
    return directory


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The parts whose footers and columns are read from here on."""
    seen: list[str] = []
    footer_and_columns = dataset._footer_and_columns

    def counted(fs, path, columns):
        seen.append(path)
        return footer_and_columns(fs, path, columns)

    monkeypatch.setattr(dataset, "_footer_and_columns", counted)
    return seen


def test_plain_reads_see_the_live_rows_after_compaction_and_only_losing_parts_are_rewritten(library):
    before, parts = live(library), list_parts(library)
    stats, after = compact(library, None, "key")
    assert stats == {"parts_rewritten": 1, "parts_deleted": 0, "rows_dropped": 5}
    assert plain_read(library).equals(before)
    assert len(set(parts) & set(list_parts(library))) == 3  # two untouched parts of run-1 and run-2's
    fresh = read_part_rows(library, ["key", "video_id", "run_id"])
    assert sorted(after.paths) == sorted(fresh.paths)
    assert after.rows.drop_columns(["_part"]).sort_by("key").equals(fresh.rows.drop_columns(["_part"]).sort_by("key"))


def test_deleted_videos_leave_and_a_part_losing_every_row_is_deleted(library):
    wanted = pa.array([f"v{i}" for i in range(10, 30)])  # videos 0-9 gone from the manifest
    stats, after = compact(library, wanted, "key")
    assert stats == {"parts_rewritten": 0, "parts_deleted": 2, "rows_dropped": 15}
    assert plain_read(library)["key"].to_pylist() == sorted(f"v{i}#0" for i in range(10, 30))
    assert sorted(after.paths) == list_parts(library)


def test_the_parts_the_plan_read_are_not_read_again(library, reads):
    known = read_part_rows(library, SMALL_COLUMNS)  # as the plan reads them
    reads.clear()
    stats, after = compact(library, None, "key", known)
    assert stats["parts_rewritten"] == 1 and reads == []  # the small columns came from the plan
    stats, after = compact(library, None, "key", after)
    assert stats["rows_dropped"] == 0 and reads == []  # a night with nothing to drop reads no part
    new = write_part(embeddings_table(2, seed=9, run_id="run-3"), library, "key")  # videos 0-1 again
    stats, _ = compact(library, None, "key", after)
    assert reads == [new] and stats == {"parts_rewritten": 1, "parts_deleted": 0, "rows_dropped": 2}


@pytest.mark.parametrize("first_run", ["run-a", "run-1"], ids=["original-listed-first", "survivors-listed-first"])
def test_a_compaction_interrupted_after_writing_and_before_deleting_loses_nothing(tmp_path, first_run):
    """The rewritten part (the survivors of the first part) exists beside its original; either may
    be listed first."""
    first = embeddings_table(30, run_id=first_run)
    library = write(tmp_path / "videos", first.slice(0, 10), first.slice(10, 20),
                    embeddings_table(5, seed=3, run_id="run-z"), first.slice(5, 5))
    expected = live(library)
    assert expected.num_rows == 30
    stats, _ = compact(library, None, "key")
    # The original goes whole and its survivors stay: rewriting the original would land on the
    # survivors' name, which compaction also deletes.
    assert stats == {"parts_rewritten": 0, "parts_deleted": 1, "rows_dropped": 10}
    assert plain_read(library).equals(expected)

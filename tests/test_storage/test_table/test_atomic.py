"""Atomic publication (storage/table/atomic.py): a file appears whole under its name or not at all.
A failed write leaves neither the file nor a temporary one; a reader never sees a partial file;
publish_in makes the directory and returns the file's path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from storage.table import atomic
from storage.table.atomic import TEMP_PREFIX, publish_in, temporary_path
from storage.table.dataset import list_parts, write_part


def test_publish_in_makes_the_directory_and_returns_the_whole_files_path(tmp_path):
    path = publish_in(str(tmp_path / "out" / "runs"), "run.json", b'{"rows": 3}')
    assert path == str(tmp_path / "out" / "runs" / "run.json")
    assert Path(path).read_bytes() == b'{"rows": 3}' and os.listdir(tmp_path / "out" / "runs") == ["run.json"]


def test_a_local_file_is_published_as_a_copy(tmp_path):
    source = tmp_path / "made.bin"
    source.write_bytes(b"\1" * 1000)
    path = publish_in(str(tmp_path / "out"), "copy.bin", source)
    assert Path(path).read_bytes() == source.read_bytes() and source.exists()


def test_publishing_again_replaces_the_file_whole(tmp_path):
    publish_in(str(tmp_path), "record.json", b"old" * 100)
    path = publish_in(str(tmp_path), "record.json", b"new")
    assert Path(path).read_bytes() == b"new" and os.listdir(tmp_path) == ["record.json"]


@pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
def test_a_failed_write_leaves_neither_the_file_nor_a_temporary_one(tmp_path, monkeypatch, failure):
    def fails(source, destination):
        raise failure

    monkeypatch.setattr(atomic.os, "replace", fails)  # the bytes are written; publishing them fails
    with pytest.raises(type(failure)):
        publish_in(str(tmp_path), "record.json", b"x" * 1000)
    assert os.listdir(tmp_path) == []


def test_a_failed_rewrite_leaves_the_old_file_whole(tmp_path, monkeypatch):
    publish_in(str(tmp_path), "record.json", b"old")

    def interrupted(source, destination, **kwargs):  # Ctrl-C half way through copying the new bytes
        with open(destination, "wb") as f:
            f.write(Path(source).read_bytes()[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.shutil, "copyfile", interrupted)
    new = tmp_path / "new.bin"
    new.write_bytes(b"n" * 100)
    with pytest.raises(KeyboardInterrupt):
        publish_in(str(tmp_path), "record.json", new)
    assert (tmp_path / "record.json").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["new.bin", "record.json"]  # no temporary file left


def test_a_reader_never_sees_a_partial_file(tmp_path, monkeypatch):
    """Half way through the write, the name holds nothing (then the old file), and what is being
    written has a name every reader skips (pyarrow, DuckDB and vidx's own listing)."""
    seen = []
    copy = shutil.copyfile

    def halfway(source, destination, **kwargs):
        data = Path(source).read_bytes()
        with open(destination, "wb") as f:
            f.write(data[: len(data) // 2])
        seen.append((os.path.exists(tmp_path / "videos" / "part.parquet"), sorted(os.listdir(tmp_path / "videos")),
                     list_parts(str(tmp_path / "videos")), ds.dataset(str(tmp_path / "videos")).files))
        return copy(source, destination)

    monkeypatch.setattr(atomic.shutil, "copyfile", halfway)
    (tmp_path / "videos").mkdir()
    table = pa.table({"key": ["a#0"], "run_id": ["r1"]})
    source = tmp_path / "table.parquet"
    pq.write_table(table, source)
    publish_in(str(tmp_path / "videos"), "part.parquet", source)
    [(exists, names, parts, files)] = seen
    assert not exists and parts == [] and files == []
    [temporary] = names
    assert temporary.startswith(TEMP_PREFIX) and temporary.endswith(".parquet")
    assert os.listdir(tmp_path / "videos") == ["part.parquet"]
    assert ds.dataset(str(tmp_path / "videos")).to_table().equals(table)


def test_a_part_written_twice_is_one_part(tmp_path):
    table = pa.table({"key": ["a#0", "b#0"], "run_id": ["r1", "r1"]})
    first = write_part(table, str(tmp_path), "key")
    assert write_part(table, str(tmp_path), "key") == first and list_parts(str(tmp_path)) == [first]


def test_temporary_names_are_hidden_beside_the_target_and_never_the_same(tmp_path):
    names = {temporary_path(tmp_path / "part-1.parquet") for _ in range(100)}
    assert len(names) == 100
    for name in names:
        directory, base = os.path.split(name)
        assert directory == str(tmp_path) and base.startswith(TEMP_PREFIX) and base.endswith(".parquet")

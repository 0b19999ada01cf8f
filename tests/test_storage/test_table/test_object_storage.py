"""The dataset on an S3-compatible server: atomic parts without rename, fresh listings, run
records and manifests by URL, file stamps from listings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import storage.table.dataset
import storage.table.files
from object_store import new_bucket
from storage.table.dataset import list_parts, read_live, remove_temp_files, write_part
from storage.table.files import file_stat, list_stamps
from storage.table.manifest import read_manifest
from storage.table.runs import write_run_record

REPO = Path(__file__).resolve().parents[3]

# Run in a subprocess: write one part in 5 MiB multipart pieces, one at a time (s3fs does so above
# 100 MiB) and die by SIGKILL as the second piece starts, the first one stored on the server.
KILLED_WRITE = """
import functools, os, signal, sys
import pyarrow.parquet as pq
import s3fs.core
from storage.table.dataset import write_part

S3 = s3fs.core.S3FileSystem
S3._pipe_file = functools.partialmethod(S3._pipe_file, chunksize=5 * 2**20, max_concurrency=1)
call_s3 = S3._call_s3

async def dying_call(self, method, *args, **kwargs):
    if method == "upload_part" and kwargs["PartNumber"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return await call_s3(self, method, *args, **kwargs)

S3._call_s3 = dying_call
write_part(pq.read_table(sys.argv[1]), sys.argv[2], "key")
"""


def rows(keys: list[str], run_id: str = "r1", dim: int = 4, seed: int = 0) -> pa.Table:
    vectors = np.random.default_rng(seed).standard_normal((len(keys), dim), np.float32)
    return pa.table({"key": keys, "video_id": [k.split("#")[0] for k in keys], "run_id": [run_id] * len(keys),
                     "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)})


def test_a_part_killed_mid_upload_is_never_visible_and_its_rewrite_replaces_it(s3, tmp_path):
    directory = f"s3://{new_bucket()}/index/videos"
    earlier = write_part(rows(["a#0", "b#0"]), directory, "key")
    big = rows([f"v{i:05d}#0" for i in range(3000)], run_id="r2", dim=1024, seed=1)  # 12 MB: three pieces
    pq.write_table(big, tmp_path / "big.parquet")
    result = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(tmp_path / "big.parquet"), directory],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]

    bucket = directory.split("/")[2]
    client = boto3.client("s3")
    [upload] = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [p["PartNumber"] for p in client.list_parts(Bucket=bucket, Key=upload["Key"],
                                                        UploadId=upload["UploadId"])["Parts"]] == [1]
    assert list_parts(directory) == [earlier]  # the stored piece is invisible to every reader
    assert sorted(read_live(directory)["key"].to_pylist()) == ["a#0", "b#0"]
    assert pq.read_table(directory.replace("s3://", ""), filesystem=fsspec.filesystem("s3")).num_rows == 2

    assert remove_temp_files(directory) == 1  # as the next run starts
    assert "Uploads" not in client.list_multipart_uploads(Bucket=bucket)
    path = write_part(big, directory, "key")
    assert write_part(big, directory, "key") == path  # a retried write replaces
    assert list_parts(directory) == sorted([earlier, path])
    assert read_live(directory).num_rows == 3002


def test_an_exception_while_writing_publishes_nothing(s3, monkeypatch):
    directory = f"s3://{new_bucket()}/index/videos"

    def interrupted(table, where, **kwargs):  # Ctrl-C half way through the Parquet bytes
        where.write(b"PAR1" + b"\0" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.table.dataset.pq, "write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_part(rows(["a#0"]), directory, "key")
    assert list_parts(directory) == []


def test_parts_another_process_wrote_since_the_last_listing_are_seen(s3):
    directory = f"s3://{new_bucket()}/index/videos"
    first = write_part(rows(["a#0"]), directory, "key")
    assert list_parts(directory) == [first]  # s3fs now holds this listing
    buffer = pa.BufferOutputStream()
    pq.write_table(rows(["b#0"], run_id="r2"), buffer)
    bucket, prefix = directory.removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/part-other.parquet", Body=buffer.getvalue().to_pybytes())
    assert len(list_parts(directory)) == 2
    assert sorted(read_live(directory)["key"].to_pylist()) == ["a#0", "b#0"]


def test_run_records_are_published_whole_and_named_with_their_scheme(s3):
    output = f"s3://{new_bucket()}/index"
    path = write_run_record(output, "20260101T000000000000Z-abcdef", {"stats": {"rows_ok": 3}})
    assert path == f"{output}/runs/20260101T000000000000Z-abcdef.json"
    with fsspec.open(path) as f:
        assert b'"rows_ok": 3' in f.read()


def test_manifests_by_url_keep_the_scheme_of_their_videos(s3):
    bucket = new_bucket()
    fs = fsspec.filesystem("s3")
    for name in ("b.mp4", "a.mp4", "notes.txt"):
        fs.pipe_file(f"{bucket}/library/{name}", b"x")
    fs.pipe_file(f"{bucket}/m.jsonl", f'{{"uri": "s3://{bucket}/library/a.mp4", "genre": "t"}}\n'.encode())
    assert read_manifest(f"s3://{bucket}/library").column("uri").to_pylist() == [
        f"s3://{bucket}/library/a.mp4", f"s3://{bucket}/library/b.mp4"]
    manifest = read_manifest(f"s3://{bucket}/m.jsonl")
    assert manifest.select(["video_id", "genre"]).to_pylist() == [{"video_id": "a", "genre": "t"}]


@pytest.fixture
def files_here_and_there(s3, tmp_path) -> list[str]:
    """Videos in two directories on S3 and two local ones, with a missing file and a directory
    named like a video in each, and a dangling link locally."""
    bucket, fs, uris = new_bucket(), fsspec.filesystem("s3"), []
    for d in ("one", "two"):
        for name in ("a.mp4", "b.mp4"):
            fs.pipe_file(f"{bucket}/{d}/{name}", (d + name).encode())
        fs.pipe_file(f"{bucket}/{d}/folder.mp4/inside", b"x")
        uris += [f"s3://{bucket}/{d}/{n}" for n in ("a.mp4", "b.mp4", "missing.mp4", "folder.mp4")]
        (tmp_path / d / "folder.mp4").mkdir(parents=True)
        for name in ("a.mp4", "b.mp4"):
            (tmp_path / d / name).write_bytes((d + name).encode())
        uris += [str(tmp_path / d / n) for n in ("a.mp4", "b.mp4", "missing.mp4", "folder.mp4")]
    (tmp_path / "one" / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    return uris + [str(tmp_path / "one" / "dangling.mp4"), f"file://{tmp_path}/two/a.mp4"]


def test_stamps_from_listings_equal_one_request_per_file(files_here_and_there, monkeypatch):
    expected = [file_stat(u) for u in files_here_and_there]
    assert sum(s is None for s in expected) == 9 and len(set(expected) - {None}) == 8
    looked_up = []
    monkeypatch.setattr(storage.table.files, "file_stat", lambda uri: looked_up.append(uri) or file_stat(uri))
    assert list_stamps(pa.array(files_here_and_there)).to_pylist() == expected
    # Only what no listing names is looked up alone: the missing files.
    assert sorted(looked_up) == sorted(u for u in files_here_and_there if u.endswith("missing.mp4"))

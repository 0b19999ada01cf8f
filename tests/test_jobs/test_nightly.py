"""Three nights of a changing library, served while queries keep coming, on each engine: milvus-lite
(its server mode, so the job and the client can share it) and a Milvus server.

Night 1 indexes the library; night 2 adds, changes, deletes and edits metadata, and its first
attempt is killed mid-run; night 3 changes the model. After each night the served collection must
equal that night's manifest: its ids and metadata, and embeddings equal to a fresh index.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from cli import cli_json
from encoders import create_model
from encoders.checkpoint import to_official_keys
from jobs.duplicates import duplicates
from jobs.index import index
from jobs.nightly import nightly, workdir_lock
from jobs.query import run_query
from jobs.search import search
from jobs.synth import synth
from processes import kill_group, wait_for
from storage.table.dataset import read_live
from storage.milvus.store import VectorStore
from storage.milvus.nights import night_written_at, served_night, visible_under

pytestmark = pytest.mark.slow
METADATA = ("shape", "colour", "direction", "background", "genre")


def write_manifest(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def served(db: str) -> dict[str, dict]:
    """key -> row (metadata and vector) of what the videos alias serves now: the rows of the night
    it serves, as of its last write, as a pymilvus reader asks for them (storage/milvus/nights.py)."""
    store = VectorStore(db)
    description = store.described("videos")
    properties = description["properties"]
    rows = store.query(description["collection_name"], filter=visible_under("", served_night(properties)),
                       output_fields=["*"], limit=16_384, as_of=night_written_at(properties))
    return {row["key"]: row for row in rows}


def fresh_vectors(manifest: str, output: Path, **model) -> dict[str, np.ndarray]:
    """key -> vector from a from-scratch index of the same manifest."""
    index(manifest, str(output), **model)
    rows = read_live(str(output / "videos"))
    return dict(zip(rows["key"].to_pylist(), np.stack(rows["embedding"].to_numpy(zero_copy_only=False))))


def assert_serves(db: str, manifest_rows: list[dict], vectors: dict[str, np.ndarray]) -> None:
    rows = served(db)
    assert sorted(r["video_id"] for r in rows.values()) == sorted(r["video_id"] for r in manifest_rows)
    by_id = {r["video_id"]: r for r in manifest_rows}
    for key, row in rows.items():
        assert {c: row[c] for c in METADATA} == {c: by_id[row["video_id"]][c] for c in METADATA}, key
        np.testing.assert_allclose(row["embedding"], vectors[key], atol=1e-5, err_msg=key)


def run_night(capsys, manifest: str, workdir: Path, db: str, *model: str) -> dict:
    return cli_json(capsys, "nightly", "--manifest", manifest, "--workdir", str(workdir), "--db", db, *model)


class QueryStream(threading.Thread):
    """A client that keeps searching and querying, as users do while the nightly job runs."""

    def __init__(self, db: str):
        super().__init__(daemon=True)
        self.db, self.stop, self.answered, self.errors = db, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                assert search(self.db, text="a red circle moves up", k=3)
                assert run_query(self.db, "SELECT video_id, genre FROM videos WHERE segment = 0 LIMIT 5")
                self.answered += 1
            except Exception as e:  # noqa: BLE001 (any failure is what the test counts)
                self.errors.append(repr(e))


@pytest.fixture(params=["milvus-lite", "milvus-server"])
def shared_db(request, tmp_path) -> str:
    """A database the nightly job (a subprocess too) and a query client share at once."""
    if request.param == "milvus-server":
        yield request.getfixturevalue("server_db")
        return
    from servers import start_milvus_lite_server

    process, uri = start_milvus_lite_server(tmp_path / "lite.db")
    yield uri
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def query_stream(shared_db):
    stream = QueryStream(shared_db)
    yield stream
    stream.stop.set()
    stream.join(timeout=60)


def new_parts(workdir: Path, before: set[str]) -> set[str]:
    return {p.name for p in (workdir / "videos").glob("part-*.parquet")} - before


def test_three_nights_serve_each_manifest_with_no_failed_query(tmp_path, shared_db, local_ray, query_stream, capsys):
    library = [json.loads(line) for line in synth(tmp_path / "lib", n=11, seed=23).read_text().splitlines()]
    for row in library:
        row["genre"] = "archive"
    workdir, db = tmp_path / "work", shared_db

    # Night 1: the first 8 videos.
    night1 = library[:8]
    stats = run_night(capsys, write_manifest(tmp_path / "night1.jsonl", night1), workdir, db, "--model", "tiny")
    assert (stats["added"], stats["changed"], stats["deleted"], stats["reused"]) == (8, 0, 0, 0)
    query_stream.start()
    wait_for(lambda: query_stream.answered > 0)
    assert_serves(db, night1, fresh_vectors(str(tmp_path / "night1.jsonl"), tmp_path / "fresh1", model="tiny"))

    # Night 2: add two, change one's content, delete one, edit one's metadata; killed, then re-run.
    changed, deleted, edited = library[0], library[1], library[2]
    shutil.copyfile(library[10]["uri"], changed["uri"])  # new content at the same uri and video_id
    night2 = [dict(row, genre="featured") if row is edited else row for row in library[:10] if row is not deleted]
    manifest2 = write_manifest(tmp_path / "night2.jsonl", night2)
    before = {p.name for p in (workdir / "videos").glob("part-*.parquet")}
    killed = subprocess.Popen(
        [sys.executable, "-m", "jobs", "nightly", "--manifest", manifest2, "--workdir", str(workdir), "--db", db,
         "--model", "tiny", "--batch-size", "1", "--rows-per-part", "1"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "killed.log", "w"))  # noqa: SIM115
    try:
        wait_for(lambda: new_parts(workdir, before) or killed.poll() is not None, timeout=180)
    finally:
        kill_group(killed)
    assert killed.returncode == -9, (tmp_path / "killed.log").read_text()[-3000:]
    to_encode = {changed["video_id"], library[8]["video_id"], library[9]["video_id"]}
    written_before_kill = {video_id for name in new_parts(workdir, before)
                           for video_id in pq.read_table(workdir / "videos" / name)["video_id"].to_pylist()}
    # The kill lands within moments of the first part: some encoded videos, perhaps the edited
    # one's refreshed row too (its write follows the encoding's at once), never anything else.
    assert written_before_kill <= to_encode | {edited["video_id"]}
    assert {r["video_id"] for r in served(db).values()} == {r["video_id"] for r in night1}  # killed before its swap
    live = read_live(str(workdir / "videos"))
    still_to_delete = deleted["video_id"] in live["video_id"].to_pylist()
    stats = run_night(capsys, manifest2, workdir, db, "--model", "tiny")
    # What the killed night wrote is kept, what it did not is done now: each video written once.
    assert (stats["deleted"], stats["metadata_updated"]) == (
        int(still_to_delete), int(edited["video_id"] not in written_before_kill)), stats
    assert stats["added"] + stats["changed"] == len(to_encode - written_before_kill)
    # The stats are true: the rows this night's index wrote are those of the videos it says it did.
    run_id = json.loads(Path(stats["index_stats_file"]).read_text())["run_id"]
    rows = read_live(str(workdir / "videos"))
    rewritten = set(rows.filter(pc.equal(rows["run_id"], run_id))["video_id"].to_pylist())
    assert rewritten == (to_encode | {edited["video_id"]}) - written_before_kill
    assert_serves(db, night2, fresh_vectors(manifest2, tmp_path / "fresh2", model="tiny"))

    # Night 3: another model (official-format checkpoint): everything re-encoded into a new version.
    checkpoint = tmp_path / "pytorch_model.bin.1"
    torch.save(to_official_keys(create_model("tiny", device="cpu", random_init_seed=1).module.state_dict()), checkpoint)
    model = ["--model", "clip2video", "--checkpoint", str(checkpoint)]
    stats = run_night(capsys, manifest2, workdir, db, *model)
    assert (stats["changed"], stats["added"], stats["reused"], stats["deleted"]) == (len(night2), 0, 0, 0)
    assert_serves(db, night2, fresh_vectors(manifest2, tmp_path / "fresh3", model="clip2video",
                                            checkpoint=str(checkpoint)))
    assert len(VectorStore(db).versions("videos")) == 2  # the served one and the one before

    query_stream.stop.set()
    query_stream.join(timeout=60)
    assert query_stream.errors == [] and query_stream.answered > 3


def parquet_footprint(workdir: Path) -> dict[str, int]:
    return {str(p.relative_to(workdir)): p.stat().st_size for p in workdir.rglob("*.parquet")}


def test_ten_unchanged_nights_encode_nothing_and_store_what_one_night_stored(tmp_path, local_ray):
    manifest, workdir, db = str(synth(tmp_path / "lib", n=4, seed=29)), tmp_path / "work", str(tmp_path / "vidx.db")
    first = nightly(manifest, str(workdir), db, model="tiny")
    after_one = parquet_footprint(workdir)
    for _ in range(9):
        stats = nightly(manifest, str(workdir), db, model="tiny")
        assert (stats["added"], stats["changed"], stats["reused"]) == (0, 0, 4)
        assert stats["unchanged"] == ["captions", "videos"] and stats["served"] == first["served"]
    assert parquet_footprint(workdir) == after_one
    assert len(list((workdir / "runs").glob("*.json"))) == 20  # every run leaves its stats: 10 nights, 10 indexes


def test_a_night_keeps_the_duplicates_up_to_date_and_serves_their_groups(tmp_path, local_ray):
    manifest, workdir, db = synth(tmp_path / "lib", n=3, seed=31), tmp_path / "work", str(tmp_path / "vidx.db")
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    assert nightly(str(manifest), str(workdir), db, model="tiny")["duplicates"] is None  # never computed: not run
    duplicates(str(workdir), threshold=0.9999, method="exact")
    copy = {**rows[1], "video_id": "a_copy"}  # the same footage under a new id, named before the others
    stats = nightly(write_manifest(tmp_path / "night.jsonl", [*rows, copy]), str(workdir), db, model="tiny")
    assert stats["added"] == 1 and stats["duplicates"]["videos_compared"] == 1 and stats["duplicates"]["groups_written"]
    grouped = run_query(db, "SELECT video_id FROM videos WHERE duplicate_group = 'a_copy'")
    assert {row["video_id"] for row in grouped} == {"a_copy", rows[1]["video_id"]}


def test_a_second_nightly_run_in_the_same_workdir_is_refused(tmp_path):
    with workdir_lock(str(tmp_path)), pytest.raises(ValueError, match="another nightly run is working in"):
        nightly("unused.jsonl", str(tmp_path), str(tmp_path / "vidx.db"))

"""The runs on Ray clusters (jobs/pipeline/cluster.py: the connection and the checks a cluster must
pass before any work).

The index job on a three-node Ray cluster, with manifest, videos and output on an S3-compatible
server: a head that schedules no work (as ray_cluster.yaml), a CPU worker, and a worker that
declares a logical GPU (this machine has none, so its encoders run with --device cpu). And
`ray start --head` + `ray job submit --working-dir . -- python -m jobs index ...` on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cli import refused
from flaky_s3 import install, set_faults
from jobs.__main__ import main
from jobs.index import index
from jobs.synth import synth
from object_store import new_bucket, upload
from processes import kill_group, wait_for
from ray_nodes import LocalCluster, job_environment

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
TESTS = REPO / "tests"
BAD_KINDS = ["empty", "garbage", "text", "truncated", "truncated_faststart", "header_only", "image", "missing"]
# Small parts and batches: many parts, so a node lost mid-run leaves finished ones behind.
SMALL = ["--model", "tiny", "--device", "cpu", "--batch-size", "2", "--rows-per-part", "4"]


# A one-node cluster first: the three-node one below stays up until this module ends.
@pytest.fixture
def ray_head():
    """A real head node that runs work, stopped afterwards by process id."""
    cluster = LocalCluster(job_environment({}))
    try:
        cluster.start_head(num_cpus=2)
        yield cluster
    finally:
        cluster.stop()


def test_index_runs_under_ray_job_submit(ray_head, tmp_path):
    manifest = synth(tmp_path / "synth", n=4, seed=5)
    output = tmp_path / "index"
    result = ray_head.submit("python", "-m", "jobs", "index", "--model", "tiny", "--manifest", str(manifest),
                             "--output", str(output), working_dir=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout
    table = pq.read_table(output / "videos")
    assert table.num_rows == 4 and set(table["status"].to_pylist()) == {"ok"}


def test_cluster_config_is_valid_for_the_ray_cluster_launcher():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((REPO / "ray_cluster.yaml").read_text()))
    validate_config(config)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head must schedule no work"
    assert any(cmd.startswith("cd ~/vidx && python3 -m pip install -e .") for cmd in config["setup_commands"])


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    """Head (no CPUs for work), a CPU worker, a worker declaring one GPU; every node and job sees
    the AWS variables and the `flaky://` test filesystem."""
    plugins = install(tmp_path_factory.mktemp("plugins"))
    nodes = LocalCluster(job_environment({**s3, "PYTHONPATH": os.pathsep.join([str(plugins), str(TESTS)])}))
    try:
        nodes.start_head()
        nodes.cpu_worker = nodes.add_worker(num_cpus=2)
        nodes.gpu_worker = nodes.add_worker(num_cpus=1, num_gpus=1)
        yield nodes
    finally:
        nodes.stop()


def vidx(cluster: LocalCluster, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m jobs ARGS --address CLUSTER` on this machine, a driver outside the cluster."""
    return subprocess.run([sys.executable, "-m", "jobs", *args, "--address", cluster.address], env=cluster.env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def library(s3, good_videos, bad_files, tmp_path_factory) -> dict:
    """32 videos: 12 synth videos with captions and metadata, the 12 good test videos (codecs, odd
    sizes, rotation, VFR, long and open GOP) and 8 broken files, as one manifest on S3 (Parquet, s3:// uris)
    and one over the same files on local disk."""
    work, bucket = tmp_path_factory.mktemp("library"), new_bucket()
    rows = [json.loads(line) for line in synth(work / "synth", n=12, seed=21).read_text().splitlines()]
    rows += [{"uri": str(p), "video_id": f"good_{name}", "captions": [f"a {name} clip"]}
             for name, p in good_videos.items()]
    rows += [{"uri": str(bad_files[kind]), "video_id": f"bad_{kind}", "captions": []} for kind in BAD_KINDS]
    local = pa.Table.from_pylist(rows)
    remote = [{**r, "uri": f"s3://{bucket}/library/{Path(r['uri']).name}"} for r in rows]
    for row, url in zip(rows, remote):
        if Path(row["uri"]).exists():
            upload(Path(row["uri"]), url["uri"])
    pq.write_table(local, work / "manifest.parquet")
    with fsspec.open(f"s3://{bucket}/manifest.parquet", "wb") as f:
        pq.write_table(pa.Table.from_pylist(remote), f)
    return {"bucket": bucket, "manifest": f"s3://{bucket}/manifest.parquet", "local_manifest": work / "manifest.parquet",
            "good": 12 + len(good_videos), "bad": len(BAD_KINDS)}


@pytest.fixture(scope="module")
def single_node_run(library, local_ray, tmp_path_factory) -> Path:
    """The reference: the same videos from local disk, on one local Ray."""
    output = tmp_path_factory.mktemp("single_node") / "index"
    index(str(library["local_manifest"]), str(output), model="tiny")
    return output


def by_video(table: pa.Table) -> dict[str, dict]:
    return {row["video_id"]: row for row in table.to_pylist()}


def assert_same_rows(table: pa.Table, reference: pa.Table) -> None:
    rows, expected = by_video(table), by_video(reference)
    assert sorted(rows) == sorted(expected) and table.num_rows == len(rows)
    for video_id, row in rows.items():
        want = expected[video_id]
        assert (row["status"], row["error"] is None) == (want["status"], want["error"] is None), video_id
        for column in ("key", "num_frames", "sampled_frames", "duration_s", "width", "height", "shape", "colour"):
            assert row[column] == want[column], (video_id, column)
        if want["embedding"] is None:
            assert row["embedding"] is None
        else:
            np.testing.assert_allclose(row["embedding"], want["embedding"], atol=1e-5)


def test_index_on_three_nodes_from_s3_to_s3_equals_a_single_node_run(cluster, library, single_node_run, tmp_path,
                                                                     capsys):
    output = f"s3://{library['bucket']}/index"
    result = cluster.submit("python", "-m", "jobs", "index", "--manifest", library["manifest"], "--output", output,
                            *SMALL, working_dir=REPO)
    assert result.returncode == 0 and "succeeded" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    [stats] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"') and "stats_file" in line]
    assert (stats["rows_ok"], stats["rows_error"]) == (library["good"], library["bad"])
    assert stats["stats_file"].startswith(f"{output}/runs/")
    # Decoding ran on the CPU worker (the GPU worker's one CPU is its encoder's), encoding on the GPU worker.
    assert set(stats["nodes"]["decoded_on"]) == {cluster.cpu_worker.node_id}
    assert set(stats["nodes"]["encoded_on"]) == {cluster.gpu_worker.node_id}

    reference = pq.read_table(single_node_run / "videos")
    assert_same_rows(pq.read_table(f"{output}/videos"), reference)  # pyarrow's own S3 client
    con = duckdb.connect()
    con.register_filesystem(fsspec.filesystem("s3"))
    assert_same_rows(con.sql(f"SELECT * FROM read_parquet('{output}/videos/part-*.parquet')").to_arrow_table(), reference)

    # load and eval on the driver, from s3://, give what they give for the single-node run
    for source, db in ((output, tmp_path / "s3.db"), (str(single_node_run), tmp_path / "local.db")):
        assert main(["load", "--embeddings", source, "--db", str(db)]) == 0
        assert main(["search", "--db", str(db), "--text", "a red circle moves to the left", "-k", "40",
                     "--json"]) == 0
        assert main(["eval", "--embeddings", source, "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    loaded, hits, metrics = out[0::3], out[1::3], out[2::3]
    assert loaded[0]["videos"]["rows"] == loaded[1]["videos"]["rows"] == library["good"]
    assert [h["key"] for h in hits[0]] == [h["key"] for h in hits[1]] and len(hits[0]) == library["good"]
    np.testing.assert_allclose([h["score"] for h in hits[0]], [h["score"] for h in hits[1]], atol=1e-5)
    assert metrics[0] == metrics[1]


def test_a_local_output_or_local_videos_on_the_cluster_are_refused_unless_shared(cluster, library, tmp_path):
    line = refused(vidx(cluster, "index", "--manifest", library["manifest"], "--output", str(tmp_path / "out"),
                        *SMALL), "index")
    assert f"--output {tmp_path / 'out'} is a local path and this Ray cluster has 3 nodes" in line
    assert "--shared-dir" in line and not (tmp_path / "out").exists()

    output = f"s3://{library['bucket']}/refused"
    line = refused(vidx(cluster, "index", "--manifest", str(library["local_manifest"]), "--output", output, *SMALL),
                   "index")
    assert f"{library['good'] + library['bad']} manifest videos are local paths" in line and not fsspec.filesystem("s3").exists(output)


def test_local_paths_declared_shared_are_accepted(cluster, good_videos, tmp_path, tmp_path_factory):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"uri": str(good_videos[n])}) + "\n" for n in ("h264", "vfr")))
    shared = str(tmp_path_factory.getbasetemp())  # the videos and the output: every node here sees it
    result = vidx(cluster, "index", "--manifest", str(manifest), "--output", str(tmp_path / "out"),
                  "--shared-dir", shared, *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert pq.read_table(tmp_path / "out" / "videos")["status"].to_pylist() == ["ok", "ok"]


def test_a_gpu_node_whose_torch_sees_no_gpu_is_refused_in_one_line_naming_it(cluster, library):
    output = f"s3://{library['bucket']}/no_gpu"
    line = refused(vidx(cluster, "index", "--manifest", library["manifest"], "--output", output, "--model", "tiny"),
                   "index")
    assert f"({cluster.gpu_worker.node_id[:12]}) declares 1 GPU(s) to Ray, but torch there sees no CUDA" in line
    assert "--device cpu" in line and not fsspec.filesystem("s3").exists(output)


def parts_on_s3(directory: str) -> dict[str, tuple]:
    """part name -> (ETag, LastModified): a rewritten part changes both."""
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache(directory)
    try:
        entries = fs.ls(directory, detail=True)
    except FileNotFoundError:
        return {}
    return {Path(e["name"]).name: (e["ETag"], e["LastModified"]) for e in entries
            if Path(e["name"]).name.startswith("part-")}


def test_losing_the_gpu_node_mid_run_loses_no_video_and_rewrites_no_finished_part(cluster, s3, tmp_path):
    bucket, manifest = new_bucket(), synth(tmp_path / "synth", n=24, seed=9)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        row["uri"] = upload(Path(row["uri"]), f"s3://{bucket}/videos/{Path(row['uri']).name}")
    fsspec.filesystem("s3").pipe_file(f"{bucket}/manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    output = f"s3://{bucket}/index"
    args = ["index", "--manifest", f"s3://{bucket}/manifest.jsonl", "--output", output, *SMALL, "--rows-per-part", "2"]
    log = open(tmp_path / "index.log", "w")  # noqa: SIM115 (the child keeps its own descriptor)
    job = subprocess.Popen([sys.executable, "-m", "jobs", *args, "--address", cluster.address], env=cluster.env,
                           cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        wait_for(lambda: len(parts_on_s3(f"{output}/videos")) >= 2, timeout=300)
        cluster.kill(cluster.gpu_worker)
        finished = parts_on_s3(f"{output}/videos")
        cluster.gpu_worker = cluster.add_worker(num_cpus=1, num_gpus=1)  # as the autoscaler replaces it
        out, _ = job.communicate(timeout=400)
    finally:
        kill_group(job)
    assert len(finished) < 12, "the node should have been lost mid-run"
    if job.returncode != 0:  # the run failed: the next one finishes the work
        rerun = vidx(cluster, *args)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    table = pq.read_table(f"{output}/videos")
    assert sorted(table["video_id"].to_pylist()) == sorted(r["video_id"] for r in rows)
    assert set(table["status"].to_pylist()) == {"ok"}
    after = parts_on_s3(f"{output}/videos")
    assert {name: after.get(name) for name in finished} == finished, "a finished part was rewritten"


def test_transient_read_errors_end_as_ok_rows_and_the_next_run_retries_what_the_rule_says(cluster, good_videos,
                                                                                         bad_files, tmp_path):
    bucket = new_bucket()
    files = {"flaky": good_videos["h264"], "down": good_videos["vfr"], "corrupt": bad_files["garbage"],
             "plain": good_videos["portrait"]}
    uris = {name: upload(path, f"s3://{bucket}/videos/{name}.mp4").replace("s3://", "flaky://")
            for name, path in files.items()}
    set_faults(uris["flaky"], 2)  # fails twice, then reads: within one task's attempts
    set_faults(uris["down"], 100)  # unreachable for this whole run
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"uri": uri}) + "\n" for uri in uris.values()))
    output = f"s3://{bucket}/index"

    def run(*extra: str) -> tuple[dict, dict]:
        result = vidx(cluster, "index", "--manifest", str(manifest), "--output", output, *SMALL, *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        rows = by_video(pq.read_table(f"{output}/videos"))
        return last_json(result.stdout), {v: (r["status"], r["error_kind"]) for v, r in rows.items()}

    stats, rows = run()
    assert rows == {"flaky": ("ok", None), "down": ("error", "transient"), "corrupt": ("error", "permanent"),
                    "plain": ("ok", None)}
    assert stats["rows_error_transient"] == 1

    set_faults(uris["down"], 0)
    stats, rows = run()  # transient errors are always retried; the corrupt file is not
    assert (stats["encoded"], stats["errors_retried"], stats["reused"]) == (1, 1, 3)
    assert rows["down"] == ("ok", None) and rows["corrupt"] == ("error", "permanent")

    stats, rows = run("--retry-errors")
    assert (stats["encoded"], stats["errors_retried"]) == (1, 1) and rows["corrupt"] == ("error", "permanent")


def test_nightly_with_manifest_and_workdir_on_s3(cluster, tmp_path):
    bucket, manifest = new_bucket(), synth(tmp_path / "synth", n=3, seed=4)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        row["uri"] = upload(Path(row["uri"]), f"s3://{bucket}/videos/{Path(row['uri']).name}")
    fsspec.filesystem("s3").pipe_file(f"{bucket}/library.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    night = ["nightly", "--manifest", f"s3://{bucket}/library.jsonl", "--workdir", f"s3://{bucket}/index",
             "--db", str(tmp_path / "vidx.db"), *SMALL]
    first = vidx(cluster, *night)
    assert first.returncode == 0, first.stderr[-3000:]
    assert last_json(first.stdout)["added"] == 3 and last_json(first.stdout)["stats_file"].startswith("s3://")
    second = last_json(vidx(cluster, *night).stdout)
    assert (second["added"], second["reused"], second["unchanged"]) == (0, 3, ["captions", "videos"])


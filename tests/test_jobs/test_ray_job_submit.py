"""`ray start --head` + `ray job submit --working-dir . -- python -m jobs index ...` on this machine."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from jobs.synth import synth
from ray_nodes import LocalCluster, job_environment

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


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

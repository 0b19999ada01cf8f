"""bench/gpu_check.sh: its CPU rehearsal runs every step and writes every key a GPU run writes, so
the check cannot rot between GPU machines; a failed or overlong step is a record, not the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from gpu_check import SCHEMA, run_step, schema_problems  # noqa: E402


@pytest.mark.slow  # about a minute: a pool of decoding processes, the tiny model, 2 cores
def test_cpu_rehearsal_writes_every_key_of_a_gpu_run(tmp_path):
    run = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--cpu", str(tmp_path)],
                         env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(result["steps"]) == list(SCHEMA)
    assert schema_problems(result) == []
    for step, row in result["steps"].items():
        assert row["status"] == "ok", (step, row["status"])  # every step has a CPU part
        if SCHEMA[step].gpu:
            assert row["gpu_status"] == "skipped: no GPU", step
            assert [row[key] for key in SCHEMA[step].gpu] == [None] * len(SCHEMA[step].gpu)
    assert result["mode"] == "cpu"
    table = (tmp_path / "gpu_check.md").read_text()
    assert all(f"| {step} | ok |" in table for step in SCHEMA)


def test_a_failed_step_keeps_every_key_and_says_why():
    row = run_step("query", lambda: 1 / 0, budget_s=5)
    assert row["status"] == "failed: ZeroDivisionError: division by zero"
    assert set(row) == set(SCHEMA["query"].all())
    assert row["batch_1_ms"] is None


def test_a_step_past_its_budget_is_stopped():
    started = time.perf_counter()
    row = run_step("media", lambda: time.sleep(10), budget_s=1)
    assert row["status"] == "failed: StepTimeout: over its time budget"
    assert time.perf_counter() - started < 5


def test_a_measured_step_without_its_figures_is_a_problem():
    steps = {step: {**dict.fromkeys(keys.all()), "status": "skipped: no GPU"} for step, keys in SCHEMA.items()}
    assert schema_problems({"steps": steps}) == []
    steps["query"] |= {"status": "ok", "batch_1_ms": 1.5, "batch_32_ms": 0.0}
    assert schema_problems({"steps": steps}) == ["query.batch_32_ms: 0.0"]
    del steps["media"]["content"]
    assert schema_problems({"steps": steps})[0] == "media: missing ['content']"

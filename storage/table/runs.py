"""Run records: one JSON per run under OUTPUT/runs/ (configuration, counts, timings)."""

from __future__ import annotations

import datetime
import json
import uuid

from .atomic import publish_in

RUNS = "runs"


def new_run_id() -> str:
    """Sortable by start time (UTC), unique across concurrent starts."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"


def write_run_record(output: str, run_id: str, record: dict) -> str:
    """Write OUTPUT/runs/<run_id>.json atomically; returns its path (a URL on object stores)."""
    record_bytes = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    return publish_in(f"{output.rstrip('/')}/{RUNS}", f"{run_id}.json", record_bytes)

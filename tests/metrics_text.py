"""/metrics as Prometheus reads it: each sample's value by its name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(metrics_text: str) -> dict[tuple, float]:
    """(name, sorted labels) -> value, as Prometheus' own parser reads /metrics."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics_text) for s in family.samples}

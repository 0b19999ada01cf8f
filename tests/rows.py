"""Comparing answers that went through different encoder batches."""

from __future__ import annotations

import pytest

# A caption encoded in a batch of another size (or with other torch threads) differs in its last
# float bits, and so do the scores of its hits.
SCORE_TOLERANCE = 1e-5


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    """The same rows in the same order, their floats (scores) equal within SCORE_TOLERANCE."""
    assert len(got) == len(expected), (got, expected)
    for row, wanted in zip(got, expected):
        assert row.keys() == wanted.keys(), (row, wanted)
        for name, value in wanted.items():
            if isinstance(value, float):
                assert row[name] == pytest.approx(value, abs=SCORE_TOLERANCE), (name, row, wanted)
            else:
                assert row[name] == value, (name, row, wanted)

"""The scores a scan or a range search keeps: inclusive bounds on the inner product with the query."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScoreRange:
    """Inclusive bounds; None for no bound. A source may keep more rows, never fewer."""

    low: float | None = None
    high: float | None = None

    def within(self, scores: np.ndarray) -> np.ndarray:
        """Which of `scores` lie in the range."""
        scores, kept = np.asarray(scores, np.float64), np.ones(len(scores), bool)  # float64, as DuckDB compares
        if self.low is not None:
            kept &= scores >= self.low
        if self.high is not None:
            kept &= scores <= self.high
        return kept

"""Progress of a long loop, logged every PROGRESS_SECONDS and when it ends, with its rate."""

from __future__ import annotations

import logging
import time

# Often enough that a stalled step shows within a coffee, rarely enough that a log of a long night stays short.
PROGRESS_SECONDS = 10.0


class Progress:
    """`advance(n)` after each piece of work; a line `what: done/total unit (rate unit/s)[, detail]`
    goes to `log` once PROGRESS_SECONDS have passed since the last, and when done reaches total."""

    def __init__(self, log: logging.Logger, what: str, total: int, unit: str):
        self.log, self.what, self.total, self.unit = log, what, total, unit
        self.done = 0
        self.started = self.reported = time.monotonic()

    def advance(self, n: int, detail: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if now - self.reported >= PROGRESS_SECONDS or self.done >= self.total:
            self.reported = now
            rate = self.done / max(now - self.started, 1e-9)
            self.log.info("%s: %d/%d %s (%.0f %s/s)%s", self.what, self.done, self.total, self.unit, rate, self.unit,
                          f", {detail}" if detail else "")

"""Admission control: a bounded number of searches and queries in flight, the rest answered 503.

Past what the encoder and the database can answer, a server that accepts every request only
makes every answer later: its latency grows with the clients. Bounding what is in flight bounds
the wait of each request admitted (about in-flight / throughput), and tells the others at once,
with Retry-After, to come back, which a client or a load balancer can act on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from errors import Unavailable

from .metrics import ServerMetrics


class ServerBusy(Unavailable):
    """More searches and queries than the server takes at once: a 503 to retry soon."""

    retry_after_seconds = 1  # one busy spell, not an outage


class Admission:
    """A route dependency (after the token check, before the body is read): at most `max_in_flight`
    requests through it at once; beyond, ServerBusy. One event loop runs it: no lock is needed."""

    def __init__(self, max_in_flight: int, metrics: ServerMetrics):
        self.max_in_flight, self.metrics, self.in_flight = max_in_flight, metrics, 0

    async def __call__(self) -> AsyncIterator[None]:
        if self.in_flight >= self.max_in_flight:
            self.metrics.rejected.inc()
            raise ServerBusy(f"the server is busy: {self.in_flight} searches and queries in flight, its limit "
                             f"(vidx serve --max-in-flight); retry after {ServerBusy.retry_after_seconds} s")
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

"""Admission control: a bounded number of searches and queries at work, a bounded queue before
them, and a 503 for the rest.

Past what the encoder and the database can answer, a server that accepts every request only
makes every answer later: its latency grows with the clients, and the threads working on them
take turns on the cores (and the GIL) with the encoder. So at most `max_in_flight` requests are
worked on at once (as many as one encoder batch holds), at most `max_queue` more wait for a place
in the event loop (no thread held), and the others are told at once, with Retry-After, to come
back: the wait of an admitted request stays about (in flight + queue) / throughput.
"""

from __future__ import annotations

import anyio
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .metrics import ServerMetrics

# What a full server asks a client to wait: one busy spell, not an outage.
BUSY_RETRY_AFTER_SECONDS = 1


class Admission:
    """ASGI middleware for the requests to `paths`, answered before routing: a 503 costs next to
    nothing, so an overloaded server spends its cores on the requests it admitted."""

    def __init__(self, app: ASGIApp, paths: set[str], max_in_flight: int, max_queue: int, metrics: ServerMetrics):
        self.app, self.paths, self.max_queue, self.metrics = app, paths, max_queue, metrics
        # anyio's limiter hands a freed place to the longest waiter (FIFO): none is lost or jumped.
        self.places = anyio.CapacityLimiter(max_in_flight)
        metrics.in_flight.set_function(lambda: self.places.borrowed_tokens)
        metrics.queue_depth.set_function(lambda: self.places.statistics().tasks_waiting)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        waiting = self.places.statistics().tasks_waiting
        if self.places.available_tokens == 0 and waiting >= self.max_queue:
            await self.busy(waiting, scope, receive, send)
            return
        async with self.places:  # each request is a task of its own: the limiter's borrower
            await self.app(scope, receive, send)

    async def busy(self, waiting: int, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.rejected.inc()
        answer = JSONResponse(status_code=503, headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}, content={
            "error": f"the server is busy: {waiting} searches and queries wait for one of its places "
                     f"(vidx serve --max-in-flight, --max-queue); retry after {BUSY_RETRY_AFTER_SECONDS} s"})
        await answer(scope, receive, send)

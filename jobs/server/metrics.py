"""What a server counts, in Prometheus' text format at /metrics (prometheus-client).

Each app has a registry of its own (tests and Ray Serve replicas make several apps in a process).
Requests are counted by the route's template (/thumbnails/{key:path}, not each key), so the
number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds: from a cached answer (~ms) to an overloaded encoder or an outage's bound.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "vidx_request_duration_seconds", "Requests by route and status, and how long each took (the _count is "
            "the number of requests)", ["route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("vidx_requests_in_flight", "Searches and queries being answered",
                               registry=self.registry)
        self.queue_depth = Gauge("vidx_requests_queued", "Searches and queries admitted, waiting for a place",
                                 registry=self.registry)
        self.rejected = Counter("vidx_requests_rejected_total", "Requests answered 503 because the server was full",
                                registry=self.registry)
        self.encode_batch = Histogram("vidx_encode_batch_size", "Captions encoded in one forward pass",
                                      buckets=BATCH_BUCKETS, registry=self.registry)
        self.encode_queue = Gauge("vidx_encode_queue_depth", "Captions waiting for the encoder",
                                  registry=self.registry)
        self.served = Gauge("vidx_served_collection", "1 for the collection each alias names, as last checked",
                            ["alias", "collection"], registry=self.registry)
        self.ready = Gauge("vidx_ready", "1 when the model is loaded and the served collections answer",
                           registry=self.registry)
        self.database_errors = Counter("vidx_vector_database_errors_total",
                                       "Requests the vector database failed (unavailable) or refused", ["kind"],
                                       registry=self.registry)

    def set_served(self, targets: dict[str, str | None]) -> None:
        """The collection each alias names now; the labels of an earlier version go."""
        self.served.clear()
        for alias, collection in targets.items():
            self.served.labels(alias, collection or "").set(1)


class RequestMetrics:
    """ASGI middleware: every HTTP request's route, status and duration into `metrics.requests`.
    `early_paths`: paths a middleware may answer before routing (Admission's 503), named as they are."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, early_paths: set[str]):
        self.app, self.metrics, self.early_paths = app, metrics, early_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(self._route(scope), str(status)).observe(time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        """The template of the route that answered (FastAPI puts it in the scope), else a fixed name."""
        if (route := scope.get("route")) is not None:
            return route.path
        if scope["path"] in self.early_paths:
            return scope["path"]
        return "/static" if scope["path"].startswith("/static/") else "unmatched"

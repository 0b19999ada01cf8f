"""`vidx serve --ray`: the same FastAPI app as N replicas on Ray Serve, against a Milvus server.

Each replica builds the app of `vidx serve` (server/app.py) (routes, token, limits, /healthz, /metrics unchanged)
in its own process; Serve's proxy spreads requests over them and the controller replaces a
replica that dies. Captions are batched with Serve's own batching (`serve.batch`) instead of the
single-process TextBatcher. milvus-lite cannot be shared by processes: replicas need a Milvus
server (or `milvus-lite server`) at --db http://host:port.

Metrics: each replica's /metrics has vidx's series (the replica that answers the scrape); Serve's
own (requests, latencies, replica health, batch sizes) are on each Ray node's metrics export port.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

import numpy as np
from ray import serve

from errors import UserError
from storage.milvus.store import is_server

from .batching import MAX_BATCH, MAX_WAIT_SECONDS, encode_grouped
from .options import AppOptions, ServeOptions

APP_NAME = "vidx"


@serve.deployment(name="VidxReplica")
@serve.ingress()
class VidxReplica:
    """One replica: the app of `vidx serve` (server/app.py) with Serve-batched captions."""

    async def __init__(self, db: str, app_options: dict):
        from .app import create_app

        self.loop = asyncio.get_running_loop()  # where encode_batch runs; routes call it from threads
        # not `self.app`: Serve's wrapper owns that name
        self.web_app = create_app(db, encode_text=self.encode_text, **app_options)

    def __serve_build_asgi_app__(self):
        return self.web_app

    def encode_text(self, model, text: str) -> np.ndarray:
        """(model, caption) -> vector, called from a route's worker thread: one caption of the next batch."""
        return asyncio.run_coroutine_threadsafe(self.encode_batch((model, text)), self.loop).result()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=MAX_WAIT_SECONDS)  # as TextBatcher's
    async def encode_batch(self, requests: list[tuple[object, str]]) -> list[np.ndarray]:
        self.web_app.state.metrics.encode_batch.observe(len(requests))
        return await asyncio.to_thread(encode_grouped, requests)  # the forward pass off the event loop


def replicas_application(db: str, settings: ServeOptions):
    """The Serve application: `replicas` of VidxReplica, each on `replica_cpus` cores (torch's threads
    follow: Ray sets OMP_NUM_THREADS to an actor's CPUs). Serve hands a replica more requests than it
    admits (in flight and queued), so the app's own 503 (one line, Retry-After) answers overload, as
    a single `vidx serve` does."""
    admitted = settings.max_in_flight + settings.max_queue
    return VidxReplica.options(num_replicas=settings.replicas, ray_actor_options={"num_cpus": settings.replica_cpus},
                               max_ongoing_requests=2 * admitted).bind(
        db, settings.model_dump(include=set(AppOptions.model_fields)))


def serve_on_ray(db: str, settings: ServeOptions) -> None:
    """Deploy on the cluster at --address / RAY_ADDRESS (else a local Ray), answer on host:port until
    interrupted, then delete the application."""
    from jobs.pipeline.cluster import connect

    if not is_server(db):
        raise UserError(f"--ray serves from several processes, and milvus-lite ({db}) lets one process own a "
                        "database: give a Milvus server's --db http://host:19530 (or run `milvus-lite server`)")
    connect(settings.address)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(replicas_application(db, settings), name=APP_NAME, route_prefix="/")
    logging.getLogger(__name__).warning("vidx on Ray Serve: %d replicas at http://%s:%d", settings.replicas,
                                        settings.host, settings.port)
    stopped = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopped.set())
    stopped.wait()
    serve.delete(APP_NAME)

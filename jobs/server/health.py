"""Readiness (/healthz) and metrics (/metrics): what a load balancer and Prometheus ask a server.

Ready means the served collections answer and the model that made them is loaded: a server
whose database is gone answers /healthz 503, and ready again by itself once the database is back.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from encoders.recorded import RecordedModels
from errors import KNOWN, one_line
from storage.milvus.store import VectorStore
from storage.schema import CAPTIONS, VIDEOS, caption_alias

from .api import ErrorAnswer, error_responses
from .metrics import ServerMetrics


class Readiness:
    """Whether a server can answer: its collections' versions, and the model loaded."""

    def __init__(self, store: VectorStore, models: RecordedModels, collection: str, metrics: ServerMetrics):
        self.store, self.models, self.metrics = store, models, metrics
        self.aliases = {VIDEOS: collection, CAPTIONS: caption_alias(collection)}

    def check(self) -> tuple[bool, dict]:
        """(ready, what /healthz answers): {"status": "ok", "videos": <collection>, "captions": ...}
        or {"status": "not ready", "error": <why, one line>}."""
        try:
            targets = {table: self.store.alias_target(alias) for table, alias in self.aliases.items()}
            self.metrics.set_served({self.aliases[table]: target for table, target in targets.items()})
            if targets[VIDEOS] is None:
                return self._answer(False, {"status": "not ready", "error": f"no collection is served as "
                                            f"{self.aliases[VIDEOS]!r} in {self.store.uri}: run vidx load"})
            self.models.model(self.store.model_record(targets[VIDEOS]))  # made once, then kept
        except KNOWN as e:
            return self._answer(False, {"status": "not ready", "error": one_line(e)})
        return self._answer(True, {"status": "ok", **targets})

    def _answer(self, ready: bool, body: dict) -> tuple[bool, dict]:
        self.metrics.ready.set(int(ready))
        return ready, body


def health_router(readiness: Readiness, metrics: ServerMetrics, auth) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", responses={503: {"model": ErrorAnswer, "description": "Not ready: the reason, in `error`"}})
    def healthz() -> JSONResponse:
        """Readiness: 200 with the served collections, or 503 with why not (no token needed)."""
        ready, body = readiness.check()
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics", dependencies=[auth], response_class=Response, responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}, **error_responses(401)})
    def metrics_text() -> Response:
        """Prometheus' text format: requests by route and status, encode batches, queue, versions, errors."""
        readiness.check()  # the served versions and readiness as of this scrape
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router

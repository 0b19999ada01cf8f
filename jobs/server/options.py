"""The options of `vidx serve`, declared once: the CLI, serve() and create_app() read them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from storage.options import Options, cli, collection_field

from .batching import MAX_BATCH

# A request to the vector database that gets no answer in this long fails (a 503), rather than
# holding its client and a thread for as long as the database is gone.
DATABASE_TIMEOUT_SECONDS = 10.0


class AppOptions(Options):
    """What the app of one server (or of each replica) is made with."""

    collection: str = collection_field("the collection the page and /search serve")
    token: str | None = Field(None, description="bearer token clients must send", json_schema_extra=cli(env="VIDX_TOKEN"))
    cache_dir: Path | None = Field(None, description="thumbnail cache (default: DB.thumbnails beside a milvus-lite "
                                  "DB, else ~/.cache/vidx/thumbnails)")
    max_upload_mb: float = Field(50.0, gt=0, description="largest request body, uploaded clips included")
    # Searches and queries worked on at once: one encoder batch. More only take turns on the cores:
    # on 2 cores with ViT-B/32's text tower, one batch of clients gave the most requests/s
    # (docs/benchmarks.md, "Serving under load").
    max_in_flight: int = Field(MAX_BATCH, ge=1, description="searches and queries worked on at once (per replica)")
    # Admitted requests waiting for a place: an admitted request waits about (in flight + queue) / throughput.
    max_queue: int = Field(32, ge=0, description="searches and queries waiting for a place; more are answered 503 "
                           "with Retry-After (per replica)")
    database_timeout_s: float = Field(DATABASE_TIMEOUT_SECONDS, gt=0, description="seconds a read of the vector "
                                      "database may take before the request fails (503)")


class ServeOptions(AppOptions):
    """`vidx serve`: where it answers, and whether as replicas on Ray Serve."""

    host: str = Field("127.0.0.1", description="bind address; beyond localhost a token is required")
    port: int = Field(8000, ge=0, le=65535, description="port")
    ray: bool = Field(False, description="replicas on Ray Serve (needs a Milvus server --db)")
    replicas: int = Field(2, ge=1, description="with --ray: how many")
    replica_cpus: float = Field(1.0, gt=0, description="with --ray: cores per replica")
    address: str | None = Field(None, description="with --ray: the Ray cluster; none: a local Ray",
                                json_schema_extra=cli(env="RAY_ADDRESS"))

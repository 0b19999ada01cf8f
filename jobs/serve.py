"""the search page and HTTP JSON API (FastAPI) for search and query; --ray: replicas on Ray Serve."""

from __future__ import annotations

import os

from errors import UserError
from storage.options import db_field

from .server.options import AppOptions, ServeOptions

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Arguments(ServeOptions):
    db: str = db_field()


def size_torch_threads() -> None:
    """torch's threads to the cores this process may use: more only take turns on them."""
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))


def serve(db: str, **options) -> None:
    """Answer on host:port until interrupted, in one process (uvicorn), or with `ray` as replicas on
    Ray Serve; `options`: ServeOptions'."""
    settings = ServeOptions.of(**options)
    if settings.host not in LOCAL_HOSTS and not settings.token:
        raise UserError(f"--host {settings.host} exposes the API beyond this machine: give --token or set VIDX_TOKEN")
    if settings.ray:
        from .server.ray_serve import serve_on_ray

        serve_on_ray(db, settings)
        return
    import uvicorn

    from .server.app import create_app

    size_torch_threads()
    app = create_app(db, **settings.model_dump(include=set(AppOptions.model_fields)))
    uvicorn.run(app, host=settings.host, port=settings.port)


def run(arguments: Arguments) -> None:
    serve(**arguments.model_dump(exclude_unset=True, exclude={"db"}), db=arguments.db)


def __getattr__(name: str):
    """`create_app`, the server's app factory (server/app.py), for who embeds the server: imported on
    first use, so that parsing a command line imports no FastAPI or Milvus client."""
    if name == "create_app":
        from .server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

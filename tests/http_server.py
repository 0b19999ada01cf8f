"""An app served by uvicorn on a free local port, in a thread of the test's process (which may
then own a milvus-lite database the app reads)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import uvicorn

from processes import wait_for
from servers import free_port


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """The base URL (http://127.0.0.1:PORT) of `app` while the block runs."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=120)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

"""How vidx's processes log: one format for the command line and Ray Train's workers alike."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Dependencies whose INFO lines say nothing a vidx user acts on.
QUIET_LOGGERS = (
    "faiss",  # milvus-lite's faiss lists the CPU builds it tried
    "milvus_lite",  # its embedded server's start and stop
)


def configure_logging() -> None:
    """INFO lines of vidx on stderr, in LOG_FORMAT; called by entry points only."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

"""A bench's progress and tables go to stderr; its figures, one JSON object, to stdout."""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

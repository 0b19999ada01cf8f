"""Entry points: each `python -m jobs <command>` is also a function here."""

from .demo import demo
from .index import index
from .load import load
from .synth import synth

__all__ = ["demo", "index", "load", "synth"]

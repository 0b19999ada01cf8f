"""Entry points: each `python -m jobs <command>` is also a function here."""

from .demo import demo
from .synth import synth

__all__ = ["demo", "synth"]

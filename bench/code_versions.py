"""The code of two revisions side by side, for before-and-after figures measured in one run: this
tree (uncommitted changes included) and a detached git worktree of an earlier commit."""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Version:
    name: str  # "before" or "after"
    rev: str
    code: Path  # the code's root: its processes run there, with it on PYTHONPATH


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def code_versions(before: str | None, work: Path):
    """[before (a detached worktree of REV, removed on exit)], after (this tree, uncommitted changes included)."""
    after = Version("after", git("describe", "--always", "--dirty"), ROOT)
    if before is None:
        yield [after]
        return
    tree = work / "before"
    git("worktree", "add", "--detach", str(tree), before)
    try:
        yield [Version("before", git("rev-parse", "--short", before), tree), after]
    finally:
        git("worktree", "remove", "--force", str(tree))

"""Questions already planned, by what asked them, so a question asked again is not parsed and
planned again: a statement by its text and parameters, a search by its options but the value it
searches for (a search's plan does not depend on it: the page asks the same filter with new texts).

A plan holds for the collection version it was made against, and a version never changes; a plan
is used again only while its alias still names that version. The most recent PLANS are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from .served import ServedColumns
from .statement import Question

PLANS = 256


class Plans:
    """A bounded map (what asked) -> (Question, the collection it was planned against), for threads."""

    def __init__(self, most: int = PLANS):
        self.most, self._plans, self._lock = most, OrderedDict(), threading.Lock()

    def question(self, key: Hashable, served: ServedColumns, plan: Callable[[], Question]) -> Question:
        """The Question of `key` planned against what `served` serves now: planned before, or `plan()` now."""
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
        if found is not None and found[0].table in served and served.collection(found[0].table) == found[1]:
            return found[0]
        question = plan()
        with self._lock:
            self._plans[key] = (question, served.collection(question.table))
            if len(self._plans) > self.most:
                self._plans.popitem(last=False)
        return question

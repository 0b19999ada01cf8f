"""Captions of concurrent requests encoded together: one forward pass per batch.

A text tower costs about as much for 32 captions as for a few on a CPU (and far less per caption
on a GPU), so a server that encodes each request's caption alone spends its cores on overhead and
on torch's threads fighting each other. Requests hand their caption to one encoder thread and wait;
it takes what is queued (up to `max_batch`), waits at most `max_wait_s` for more, and answers all
of them from one forward pass.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

# A batch: up to 32 captions in one forward pass (on a GPU about the time of one), and at most 2 ms
# of waiting for more, short beside a forward pass (~40 ms for one ViT-B/32 caption on 2 cores).
MAX_BATCH = 32
MAX_WAIT_SECONDS = 0.002


def encode_grouped(requests: Sequence[tuple[object, str]]) -> list[np.ndarray]:
    """The vector of each (model, caption): one encode_text call per model among them."""
    vectors: list[np.ndarray | None] = [None] * len(requests)
    by_model: dict[int, list[int]] = {}
    for position, (model, _) in enumerate(requests):
        by_model.setdefault(id(model), []).append(position)
    for positions in by_model.values():
        model = requests[positions[0]][0]
        for position, vector in zip(positions, model.encode_text([requests[p][1] for p in positions])):
            vectors[position] = vector
    return vectors


class TextBatcher:
    """A search.TextEncoding, (model, caption) -> vector, that batches the captions of concurrent callers.

    `on_batch(size)` is told each batch's size (metrics); `pending()` is how many captions wait."""

    def __init__(self, max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_SECONDS,
                 on_batch: Callable[[int], None] = lambda size: None):
        self.max_batch, self.max_wait_s, self.on_batch = max_batch, max_wait_s, on_batch
        self._queue: queue.SimpleQueue[tuple[object, str, Future]] = queue.SimpleQueue()
        threading.Thread(target=self._encode_forever, name="vidx-text-batcher", daemon=True).start()

    def __call__(self, model, text: str) -> np.ndarray:
        answer: Future = Future()
        self._queue.put((model, text, answer))
        return answer.result()

    def pending(self) -> int:
        return self._queue.qsize()

    def _next_batch(self) -> list[tuple[object, str, Future]]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:  # what is already queued, then what arrives before the deadline
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _encode_forever(self) -> None:
        while True:
            batch = self._next_batch()
            self.on_batch(len(batch))
            try:
                vectors = encode_grouped([(model, text) for model, text, _ in batch])
            except Exception as e:  # every caller of the batch gets the error, the thread goes on
                for *_, answer in batch:
                    answer.set_exception(e)
                continue
            for (*_, answer), vector in zip(batch, vectors):
                answer.set_result(vector)

"""Captions of concurrent requests encoded together: one forward pass per batch.

A text tower encodes 32 captions at once in a fraction of 32 times one caption's time on a CPU
(docs/benchmarks.md, "Serving under load"), and far less per caption on a GPU, so a server that
encodes each request's caption alone spends its cores on overhead and on torch's threads fighting
each other. Requests hand their caption to one encoder thread and wait; it takes what is queued
(up to `max_batch`), waits at most `max_wait_s` for more, and answers all of them from one forward
pass.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from encoders.recorded import RecordedModels

# A batch: up to 32 captions in one forward pass (on a GPU about the time of one), and at most 2 ms
# of waiting for more, short beside a forward pass of one ViT-B/32 caption on 2 cores
# (docs/benchmarks.md, "Serving under load").
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
    """(model, caption) -> vector, batching the captions of concurrent callers on one encoder thread,
    started and stopped with the app (its lifespan). `on_batch(size)` is told each batch's size
    (metrics); `pending()` is how many captions wait."""

    def __init__(self, max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_SECONDS,
                 on_batch: Callable[[int], None] = lambda size: None):
        self.max_batch, self.max_wait_s, self.on_batch = max_batch, max_wait_s, on_batch
        self._queue: queue.SimpleQueue[tuple[object, str, Future] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TextBatcher:
        self.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._encode_until_stopped, name="vidx-text-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Answer what is queued, then end the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def __call__(self, model, text: str) -> np.ndarray:
        answer: Future = Future()
        self._queue.put((model, text, answer))
        return answer.result()

    def pending(self) -> int:
        return self._queue.qsize()

    def _next_batch(self) -> tuple[list[tuple[object, str, Future]], bool]:
        """(the next batch, whether stop was asked)."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:  # what is already queued, then what arrives before the deadline
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if request is None:
                return batch, True
            batch.append(request)
        return batch, False

    def _encode_until_stopped(self) -> None:
        stopped = False
        while not stopped:
            batch, stopped = self._next_batch()
            if batch:
                self._answer(batch)

    def _answer(self, batch: list[tuple[object, str, Future]]) -> None:
        self.on_batch(len(batch))
        try:
            vectors = encode_grouped([(model, text) for model, text, _ in batch])
        except Exception as e:  # every caller of the batch gets the error, the thread goes on
            for *_, answer in batch:
                answer.set_exception(e)
            return
        for (*_, answer), vector in zip(batch, vectors):
            answer.set_result(vector)


class BatchedEncoding:
    """The server's QueryEncoding (storage/query/engine.py): the collection's model, with the captions of
    concurrent requests encoded together by `encode_text` (a TextBatcher, or Ray Serve's batching)."""

    def __init__(self, models: RecordedModels, encode_text: Callable[[object, str], np.ndarray]):
        self.models, self.encode_text = models, encode_text

    def text(self, model: dict, text: str) -> np.ndarray:
        return self.encode_text(self.models.model(model), text)

    def video(self, model: dict, path: str) -> np.ndarray:
        return self.models.video(model, path)

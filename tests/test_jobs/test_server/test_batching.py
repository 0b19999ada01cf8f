"""Captions of concurrent requests encoded together (jobs/server/batching.py): one forward pass per
batch, each caption's vector as if encoded alone; an encoder error reaches every caller of its batch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from jobs.server.batching import TextBatcher


def test_concurrent_captions_are_encoded_together_as_each_alone(tiny_model):
    sizes = []
    captions = [f"a red circle moving left, number {i}" for i in range(24)]
    with TextBatcher(max_batch=8, max_wait_s=0.05, on_batch=sizes.append) as batcher, \
            ThreadPoolExecutor(len(captions)) as pool:
        vectors = list(pool.map(lambda text: batcher(tiny_model, text), captions))
    np.testing.assert_allclose(np.stack(vectors), tiny_model.encode_text(captions), atol=1e-5)
    assert sum(sizes) == len(captions) and max(sizes) > 1 and max(sizes) <= 8


def test_an_encoder_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on(tiny_model):
    class Broken:
        def encode_text(self, texts):
            raise RuntimeError("out of memory")

    with TextBatcher(max_wait_s=0.05) as batcher:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(batcher, Broken(), f"caption {i}") for i in range(4)]
            for future in futures:
                with pytest.raises(RuntimeError, match="out of memory"):
                    future.result()
        np.testing.assert_allclose(batcher(tiny_model, "a blue square"), tiny_model.encode_text(["a blue square"])[0],
                                   atol=1e-5)

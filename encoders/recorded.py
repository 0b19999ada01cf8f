"""The models collections record, made again: what a question's TEXT(..) and VIDEO(..) are encoded with.

A collection records the model that made its vectors (its spec and fingerprint); a query is encoded
by that model or by none. Knows nothing of collections: a record is a dict.
"""

from __future__ import annotations

import threading

import numpy as np

from .config import ModelConfigError


class RecordedModels:
    """Models made from recorded specs, once per fingerprint however many threads ask at once, and
    refused when the spec no longer makes the recorded fingerprint (new weights, other settings)."""

    def __init__(self):
        self._models: dict = {}
        self._lock = threading.Lock()  # a second first request waits for the model, not makes another

    def model(self, record: dict):
        """The VideoTextEncoder of `record` ({"spec": ..., "fingerprint": ...})."""
        from .factory import create_model

        with self._lock:
            if record["fingerprint"] not in self._models:
                encoder = create_model(**record["spec"])
                if encoder.fingerprint != record["fingerprint"]:
                    raise ModelConfigError(
                        f"the collection was made by {record['spec']} with fingerprint {record['fingerprint']}, but "
                        f"that spec now makes {encoder.fingerprint} (the weights or settings changed); re-index and "
                        "load")
                self._models[record["fingerprint"]] = encoder
            return self._models[record["fingerprint"]]

    def text(self, record: dict, text: str) -> np.ndarray:
        return self.model(record).encode_text([text])[0]

    def video(self, record: dict, path: str) -> np.ndarray:
        """The vector of a clip (its first segment), sampled and encoded as the model's videos were."""
        from .video import decode_video

        encoder = self.model(record)
        _, segments = decode_video(path, encoder.sampling, encoder.image_size)
        return encoder.encode_clips([segments[0].frames])[0]

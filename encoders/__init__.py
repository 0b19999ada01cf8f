"""Media -> vectors: CLIP2Video on open_clip, and the paper's frame sampling decoded with PyAV."""

from .checkpoint import CheckpointError
from .config import ModelCfg, SamplingCfg, list_models
from .encoder import VideoTextEncoder, tokenize
from .factory import load_model

__all__ = [
    "CheckpointError", "ModelCfg", "SamplingCfg", "VideoTextEncoder", "list_models", "load_model", "tokenize",
]

"""Media -> vectors: CLIP2Video on open_clip, and the paper's frame sampling decoded with PyAV.

The names below are imported on first use, so a light module (`encoders.config`) can be imported
without torch and open_clip: the command line starts without them.
"""

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "CheckpointError": "checkpoint", "ModelCfg": "config", "SamplingCfg": "config", "list_models": "config",
    "VideoTextEncoder": "encoder", "tokenize": "encoder", "create_model": "factory",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

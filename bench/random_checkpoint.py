"""A CLIP2Video checkpoint of the released ViT-B/32 geometry with random weights: the real encoder's cost."""

from __future__ import annotations

import json
from pathlib import Path

import torch

KEYS = Path(__file__).resolve().parents[1] / "tests/fixtures/clip2video_vitb32_keys.json"


def random_vitb32_checkpoint(path: Path) -> Path:
    """A CLIP2Video checkpoint with the released ViT-B/32 geometry and random weights."""
    spec = json.loads(KEYS.read_text())
    generator = torch.Generator().manual_seed(0)
    torch.save({k: torch.randn(shape, generator=generator) * 0.02 for k, shape in spec["shapes"].items()}, path)
    return path

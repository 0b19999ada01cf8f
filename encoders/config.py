"""Model configurations as data: JSON files in model_configs/ scanned into a registry."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from errors import UserError

_CONFIG_DIR = Path(__file__).parent / "model_configs"

Head = Literal["clip2video", "meanp"]
HEADS = get_args(Head)
SeekMode = Literal["exact", "keyframe"]
SEEK_MODES = get_args(SeekMode)
# Where an index run encodes: "auto", a GPU when the process sees one (on Ray, the one it assigns),
# else fp32 on CPU; "cpu", fp32 on CPU wherever the encoder lands.
Device = Literal["auto", "cpu"]
DEVICES = get_args(Device)


class ModelConfigError(UserError):
    """A model name, option or config that describes no model vidx can build; one line."""


@dataclass(frozen=True)
class SamplingCfg:
    """The paper's frame sampling: a 5 fps grid, every `feature_framerate`-th, at most `max_frames`."""

    fps: float = 5.0  # the paper extracts frames with `ffmpeg -r 5`
    feature_framerate: int = 2  # 2 for the MSR-VTT checkpoints, 1 for MSVD/VATEX
    max_frames: int = 12
    # "exact": the frames on screen at the paper's times (decoded from each GOP's keyframe);
    # "keyframe": the nearest keyframe to each time, far fewer CPU-seconds on long GOPs (docs/decoding.md;
    # docs/benchmarks.md, "CPU-seconds per video").
    seek: str = "exact"

    def __post_init__(self):
        if self.seek not in SEEK_MODES:
            raise ModelConfigError(f"seek {self.seek!r} is not one of {SEEK_MODES}")


@dataclass(frozen=True)
class PreprocessCfg:
    """CLIP preprocessing: RGB, bicubic resize of the short side, centre crop, mean/std."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class TemporalCfg:
    """CLIP2Video's temporal modules; width and heads come from the backbone (width // 64)."""

    layers: int = 4  # the "seqTransf" temporal transformer
    centers: int = 5  # K, the TAB's shared centres
    center_weight: float = 0.5  # w: score = w * global + (1 - w) * TAB
    max_positions: int = 77  # frame position table; the paper sizes it like CLIP's text context


@dataclass(frozen=True)
class ModelCfg:
    name: str
    head: str  # "clip2video" or "meanp"
    description: str = ""
    backbone: str | None = None  # open_clip model name, e.g. "ViT-B-32-quickgelu"
    backbone_pretrained: str | None = None  # open_clip pretrained tag, e.g. "openai"
    clip: dict[str, Any] | None = None  # explicit open_clip CLIP kwargs (tiny test geometries)
    random_init_seed: int | None = None  # set: weights are seeded random, never loaded
    weights: str | None = None  # a checkpoint shipped in the package, relative to encoders/
    requires_checkpoint: bool = False
    temporal: TemporalCfg = field(default_factory=TemporalCfg)
    sampling: SamplingCfg = field(default_factory=SamplingCfg)
    max_words: int = 32  # caption tokens incl. start and end, as the paper's dataloaders

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_config(name: str, raw: dict[str, Any]) -> ModelCfg:
    raw = dict(raw)
    temporal = TemporalCfg(**raw.pop("temporal", {}))
    sampling = SamplingCfg(**raw.pop("sampling", {}))
    cfg = ModelCfg(name=name, temporal=temporal, sampling=sampling, **raw)
    if cfg.head not in HEADS:
        raise ModelConfigError(f"model config {name!r}: head {cfg.head!r} is not one of {HEADS}")
    return cfg


def _scan_model_configs() -> dict[str, ModelCfg]:
    return {
        path.stem: _parse_config(path.stem, json.loads(path.read_text()))
        for path in sorted(_CONFIG_DIR.glob("*.json"))
    }


_MODEL_CONFIGS = _scan_model_configs()


def list_models() -> list[str]:
    return sorted(_MODEL_CONFIGS)


def get_model_config(name: str) -> ModelCfg:
    try:
        return _MODEL_CONFIGS[name]
    except KeyError:
        raise ModelConfigError(f"unknown model {name!r}. Available: {', '.join(list_models())}") from None

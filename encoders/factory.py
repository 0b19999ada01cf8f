"""create_model: name -> config -> architecture -> weights -> VideoTextEncoder."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import open_clip
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from . import checkpoint as ckpt
from .config import ModelCfg, ModelConfigError, get_model_config
from .encoder import VideoTextEncoder
from .model import CLIP2Video, MeanPoolCLIP, VideoTextModel

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).parent


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_autocast(device: torch.device, precision: str | None) -> torch.dtype | None:
    """bf16 autocast on GPUs by default (fp16 where bf16 is missing), exact fp32 on CPU."""
    if precision is None:
        if device.type != "cuda":
            return None
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in choices:
        raise ModelConfigError(f"precision {precision!r} is not one of {sorted(choices)}")
    return choices[precision]


def _build_clip(clip_kwargs: dict) -> CLIP:
    # The paper's CLIP (OpenAI's) uses QuickGELU; plain nn.GELU gives different outputs.
    return CLIP(**clip_kwargs, quick_gelu=True)


def _tiny_clip_kwargs(raw: dict) -> dict:
    return {
        "embed_dim": raw["embed_dim"],
        "vision_cfg": CLIPVisionCfg(**raw["vision_cfg"]),
        "text_cfg": CLIPTextCfg(**raw["text_cfg"]),
    }


def _pretrained_backbone(cfg: ModelCfg) -> CLIP:
    """A CLIP from open_clip: backbone_pretrained is a pretrained tag or a local weights file."""
    pretrained = cfg.backbone_pretrained
    logger.info("loading backbone %s (%s)", cfg.backbone, pretrained)
    try:
        model = open_clip.create_model(cfg.backbone, pretrained=pretrained)
    except RuntimeError as e:
        raise ckpt.CheckpointError(f"cannot load backbone {cfg.backbone} from {pretrained!r}: {e}") from e
    return model.float()


# Modules draw their initial weights from torch's process-wide generator: one build at a time, or a
# seeded build beside another (a server's first query beside an index run in one process) would
# draw the other's numbers and make other weights.
_BUILDING = threading.Lock()


def _seeded_random(build, seed: int):
    """Build a module with seeded random init, the same in every process (tests, smoke runs)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _head(cfg: ModelCfg, clip: CLIP, temporal=None) -> VideoTextModel:
    if cfg.head == "meanp":
        return MeanPoolCLIP(clip)
    return CLIP2Video(clip, temporal or cfg.temporal)


def build_module(cfg: ModelCfg, checkpoint: str | None) -> VideoTextModel:
    """Construct the architecture, then load weights: from the checkpoint, the backbone, or a seed."""
    with _BUILDING:
        return _built_module(cfg, checkpoint)


def _built_module(cfg: ModelCfg, checkpoint: str | None) -> VideoTextModel:
    if checkpoint is None and cfg.weights:
        checkpoint = str(_PACKAGE_DIR / cfg.weights)
    if checkpoint is None:
        if cfg.requires_checkpoint:
            raise ModelConfigError(
                f"model {cfg.name!r} needs a checkpoint (an official pytorch_model.bin.N); "
                "without one, use 'clip-meanp' (zero-shot CLIP, frame mean-pooling)"
            )
        if cfg.random_init_seed is not None:
            return _seeded_random(lambda: _head(cfg, _build_clip(_tiny_clip_kwargs(cfg.clip))), cfg.random_init_seed)
        return _head(cfg, _pretrained_backbone(cfg))

    state = ckpt.from_official_keys(ckpt.read_state_dict(checkpoint))
    clip_state = ckpt.strip_clip_prefix(state)
    if clip_state:
        clip = _build_clip(ckpt.clip_kwargs_from_state_dict(clip_state))
    elif cfg.backbone:  # a checkpoint of the temporal modules only: CLIP from open_clip
        clip = _pretrained_backbone(cfg)
        state.update({ckpt.CLIP_PREFIX + k: v for k, v in clip.state_dict().items()})
    else:
        raise ckpt.CheckpointError(f"{checkpoint}: no clip.* keys and model {cfg.name!r} names no backbone")
    temporal = None if cfg.head == "meanp" else ckpt.temporal_cfg_from_state_dict(state, cfg.temporal.center_weight)
    module = _head(cfg, clip, temporal)
    ckpt.load_strict(module, state, source=str(checkpoint), key_name=ckpt.official_key_name)
    return module


def apply_overrides(cfg: ModelCfg, overrides: dict) -> ModelCfg:
    """Replace config fields; nested configs may be given as dicts (as they come from JSON), which
    replace only the fields they name: sampling={"seek": "keyframe"} keeps the model's frame rate."""
    overrides = {
        k: dataclasses.replace(getattr(cfg, k), **v) if k in ("sampling", "temporal") and isinstance(v, dict) else v
        for k, v in overrides.items()
    }
    return dataclasses.replace(cfg, **overrides)


def create_model(
    name: str,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
    **overrides,
) -> VideoTextEncoder:
    """Create a named model ready to encode: its configuration, architecture, then weights.

    Args:
        name: a registered model: 'clip2video', 'clip-meanp', 'demo', 'tiny' (see list_models()).
        checkpoint: an official CLIP2Video checkpoint (pytorch_model.bin.N); geometry is read
            from its tensor shapes. Without `clip.*` keys, the CLIP comes from `backbone`.
        device: 'cpu', 'cuda', 'cuda:1'...; default: a GPU when there is one.
        precision: 'fp32', 'bf16' or 'fp16' autocast; default bf16 on GPU, fp32 on CPU.
        overrides: ModelCfg fields to replace, e.g. sampling={"feature_framerate": 1}, or
            backbone_pretrained='/weights/ViT-B-32.pt' (an open_clip tag or a local file).
    Returns:
        a VideoTextEncoder with encode_video, encode_text, dim, logit_scale and fingerprint.
    """
    cfg = apply_overrides(get_model_config(name), overrides)
    checkpoint = str(checkpoint) if checkpoint is not None else None
    module = build_module(cfg, checkpoint).float()
    device = resolve_device(device)
    spec = {"name": name, "checkpoint": checkpoint, **overrides}
    return VideoTextEncoder(module, cfg, spec, device, resolve_autocast(device, precision))

"""Official CLIP2Video checkpoints: read, infer geometry from tensor shapes, map key names, strict load."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from torch import nn

from errors import UserError, one_line

from .config import TemporalCfg

CLIP_PREFIX = "clip."

# The paper's names for its temporal modules -> ours. `clip.*` keys are OpenAI-CLIP names, which
# open_clip shares, so they map to themselves.
OFFICIAL_TO_VIDX = {
    "frame_position_embeddings.": "frame_positions.",
    "type_position_embeddings.": "difference_block.type_embeddings.",
    "frame2t_attention.": "difference_block.difference_attention.",
    "trans_layernorm.": "difference_block.difference_norm.",
    "transformerClip.": "temporal_transformer.",
    "actionClip.": "alignment_transformer.",
    "weight_center": "alignment_block.weight_centers",
    "emb_center": "alignment_block.embedding_centers",
}
# Scalars some OpenAI CLIP files carry beside the weights; not parameters.
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded; the message names the file and the offending keys."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict saved with torch.save; floating tensors become float32 (releases are fp16)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling a foreign file can raise nearly anything
        raise CheckpointError(f"cannot read checkpoint {path}: {one_line(e)}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"resblocks\.(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def clip_kwargs_from_state_dict(state: dict[str, torch.Tensor]) -> dict:
    """open_clip CLIP kwargs from an OpenAI-named ViT CLIP state dict, all read from tensor shapes.

    open_clip's build_model_from_openai_state_dict does the same reading but also casts the
    weights to fp16 and loads them; we only want the geometry, then one strict fp32 load.
    """
    try:
        conv = state["visual.conv1.weight"]  # (vision width, 3, patch, patch)
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        text_width = state["ln_final.weight"].shape[0]
        vision = CLIPVisionCfg(
            layers=_count_blocks(state, "visual.transformer."), width=conv.shape[0],
            patch_size=conv.shape[-1], image_size=conv.shape[-1] * grid,
        )
        text = CLIPTextCfg(
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            width=text_width, heads=text_width // 64, layers=_count_blocks(state, "transformer."),
        )
        return {"embed_dim": state["text_projection"].shape[1], "vision_cfg": vision, "text_cfg": text}
    except KeyError as e:
        raise CheckpointError(f"not a ViT CLIP state dict: missing key {e.args[0]!r}") from None


def temporal_cfg_from_state_dict(vidx_state: dict[str, torch.Tensor], center_weight: float) -> TemporalCfg:
    """CLIP2Video's temporal geometry from vidx-named tensors."""
    try:
        return TemporalCfg(
            layers=_count_blocks(vidx_state, "temporal_transformer."),
            centers=vidx_state["alignment_block.weight_centers"].shape[0],
            center_weight=center_weight,
            max_positions=vidx_state["frame_positions.weight"].shape[0],
        )
    except KeyError as e:
        raise CheckpointError(f"not a CLIP2Video checkpoint: missing {e.args[0]!r}") from None


def _rename(key: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def from_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    extras = {CLIP_PREFIX + k for k in _OPENAI_EXTRA_KEYS}
    return {_rename(k, OFFICIAL_TO_VIDX): v for k, v in state.items() if k not in extras}


_VIDX_TO_OFFICIAL = {new: old for old, new in OFFICIAL_TO_VIDX.items()}


def official_key_name(key: str) -> str:
    return _rename(key, _VIDX_TO_OFFICIAL)


def to_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {official_key_name(k): v for k, v in state.items()}


def save_official(state: dict[str, torch.Tensor], path, half: bool = False) -> None:
    """A vidx state dict as an official checkpoint (the paper's key names) at `path` (a path or a
    binary file object); half: floating tensors in fp16, half the size, read back as fp32."""
    state = {k: v.detach().cpu() for k, v in to_official_keys(state).items()}
    torch.save({k: v.half() if half and v.is_floating_point() else v for k, v in state.items()}, path)


def strip_clip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `clip.*` part of a checkpoint, with OpenAI names."""
    return {k[len(CLIP_PREFIX):]: v for k, v in state.items() if k.startswith(CLIP_PREFIX)}


def load_strict(
    module: nn.Module, state: dict[str, torch.Tensor], source: str,
    key_name: Callable[[str], str] = str,
) -> None:
    """Load every parameter; any missing, unexpected or mis-shaped key is an error naming it
    (as `key_name` spells it, e.g. the checkpoint's own names)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = [
        f"{key_name(k)} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state)) if state[k].shape != expected[k].shape
    ]
    problems = [f"missing key {key_name(k)!r}" for k in missing]
    problems += [f"unexpected key {key_name(k)!r}" for k in unexpected]
    problems += [f"shape mismatch {s}" for s in mis_shaped]
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... {len(problems) - 10} more" if len(problems) > 10 else "")
        raise CheckpointError(f"{source}: {shown}")
    module.load_state_dict(state, strict=True)

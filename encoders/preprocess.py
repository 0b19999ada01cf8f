"""CLIP preprocessing on frame tensors: bicubic short-side resize, centre crop, mean/std, padding."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .config import PreprocessCfg


def resize_center_crop(frames: np.ndarray, size: int) -> torch.Tensor:
    """(n, H, W, 3) uint8 RGB -> (n, 3, size, size) uint8.

    torchvision's antialiased bicubic on tensors follows PIL's (the paper's Resize on PIL images);
    staying uint8 keeps what travels from decoders to encoders 4x smaller than float.
    """
    chw = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    resized = TF.resize(chw, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    return TF.center_crop(resized, [size, size])


def normalize(frames: torch.Tensor, cfg: PreprocessCfg) -> torch.Tensor:
    """uint8 (..., 3, S, S) -> float32 normalised with the model's mean and std."""
    mean = torch.tensor(cfg.mean, device=frames.device).view(3, 1, 1)
    std = torch.tensor(cfg.std, device=frames.device).view(3, 1, 1)
    return (frames.to(torch.float32) / 255.0 - mean) / std


def stack_clips(
    clips: list, num_frames: int, cfg: PreprocessCfg, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 clips of 1..num_frames frames -> frames (B, T, 3, S, S) float, mask (B, T).

    Padded slots are zero in normalised units, as the paper's dataloader leaves them.
    """
    S = cfg.image_size
    frames = torch.zeros(len(clips), num_frames, 3, S, S, device=device)
    mask = torch.zeros(len(clips), num_frames, dtype=torch.long, device=device)
    for b, clip in enumerate(clips):
        clip = torch.as_tensor(clip)[:num_frames].to(device, non_blocking=True)
        frames[b, : len(clip)] = normalize(clip, cfg)
        mask[b, : len(clip)] = 1
    return frames, mask

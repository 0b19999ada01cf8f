"""Preprocessing matches the paper's PIL pipeline on the same decoded frames."""

from __future__ import annotations

import decord
import numpy as np
import PIL.Image
import pytest
import torch
from torchvision import transforms

from encoders.config import PreprocessCfg
from encoders.preprocess import normalize, resize_center_crop, stack_clips
from media import VideoSpec, write_video

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CFG = PreprocessCfg(224, CLIP_MEAN, CLIP_STD)


def paper_transform(image: PIL.Image.Image) -> torch.Tensor:
    """The paper's RawFrameExtractor._transform (torchvision on PIL images)."""
    return transforms.Compose([
        transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(CLIP_MEAN, CLIP_STD),
    ])(image)


@pytest.fixture(scope="module")
def decoded_frames(tmp_path_factory) -> np.ndarray:
    """Frames of a textured 320x240 and a 176x400 h264 video, as decord gives them."""
    frames = []
    for width, height in ((320, 240), (176, 400)):
        spec = VideoSpec(f"texture_{width}", width=width, height=height, frames=8, textured=True)
        path = write_video(tmp_path_factory.mktemp("pre") / f"{spec.name}.mp4", spec)
        frames.append(decord.VideoReader(str(path)).get_batch([0, 7]).asnumpy())
    return frames


@pytest.mark.parametrize("which", [0, 1], ids=["landscape", "portrait"])
def test_matches_pil_bicubic_resize_crop_normalise(decoded_frames, which):
    frames = decoded_frames[which]
    ours = normalize(resize_center_crop(frames, 224), CFG)
    reference = torch.stack([paper_transform(PIL.Image.fromarray(f)) for f in frames])
    assert ours.shape == reference.shape == (2, 3, 224, 224)
    mean_abs_diff = (ours - reference).abs().mean().item()
    print(f"preprocess vs PIL: mean |diff| = {mean_abs_diff:.4f} normalised units")
    assert mean_abs_diff < 0.02


def test_stack_clips_pads_with_zero_images_and_masks_them():
    clips = [torch.full((3, 3, 8, 8), 255, dtype=torch.uint8), torch.zeros((12, 3, 8, 8), dtype=torch.uint8)]
    frames, mask = stack_clips(clips, 12, PreprocessCfg(8, CLIP_MEAN, CLIP_STD))
    assert frames.shape == (2, 12, 3, 8, 8)
    assert mask.tolist() == [[1] * 3 + [0] * 9, [1] * 12]
    assert torch.all(frames[0, 3:] == 0)
    expected_white = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(frames[0, 0, :, 0, 0], expected_white)

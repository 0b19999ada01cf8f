"""Thumbnails: the frame shown at a moment, upright, as a small JPEG."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest

from encoders.thumbnails import frame_at, thumbnail_jpeg
from encoders.video import VideoDecodeError


def red_index(image: PIL.Image.Image) -> float:
    """media.frame_pixels writes each frame's index into its red channel, times 8."""
    return np.asarray(image.convert("RGB"))[..., 0].mean() / 8


@pytest.mark.parametrize("name", ["h264", "vp9_webm", "long_gop", "vfr"])
@pytest.mark.parametrize("seconds", [0.0, 0.5, 1.0])
def test_the_frame_shown_at_a_moment(good_videos, name, seconds):
    """The last frame starting at or before the moment. 15 fps (long_gop 30 fps, one keyframe at 0:
    decoded forward from it); vfr frames last 40, 120, 40, 200 ms in turn, so 0.5 s falls in frame 5
    (0.44-0.56 s) and 1.0 s starts frame 11."""
    fps = {"h264": 15, "vp9_webm": 15, "long_gop": 30}.get(name)
    index = int(seconds * fps) if fps else {0.0: 0, 0.5: 5, 1.0: 11}[seconds]
    assert red_index(frame_at(str(good_videos[name]), seconds)) == pytest.approx(index, abs=0.5)


def test_a_moment_past_the_end_is_the_last_frame(good_videos):
    assert red_index(frame_at(str(good_videos["h264"]), 60.0)) == pytest.approx(29, abs=0.5)


def test_rotated_video_is_turned_upright(good_videos):
    """Stored 64x48 with a -90 degree display matrix: shown 48x64, top-left block moves top-right."""
    image = frame_at(str(good_videos["rotated"]), 0.0)
    assert image.size == (48, 64)
    green = np.asarray(image)[..., 1].astype(float)
    assert green[:28, 28:].mean() > 200 and green[:28, :20].mean() < 50


def test_thumbnail_is_a_jpeg_no_larger_than_asked(good_videos):
    at_one_second = PIL.Image.open(io.BytesIO(thumbnail_jpeg(str(good_videos["h264"]), 1.0)))
    assert red_index(at_one_second) == pytest.approx(15, abs=0.5)
    image = PIL.Image.open(io.BytesIO(thumbnail_jpeg(str(good_videos["odd_size"]), 0.0, side=32)))
    assert image.format == "JPEG" and max(image.size) == 32 and image.size[0] > image.size[1]


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "image"])
def test_unusable_files_raise_one_line(bad_files, kind):
    with pytest.raises(VideoDecodeError) as error:
        thumbnail_jpeg(str(bad_files[kind]), 0.0)
    assert "\n" not in str(error.value)

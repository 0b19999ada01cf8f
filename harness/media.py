"""Real video files for tests and benchmarks, encoded with PyAV's codecs, plus broken files of every kind."""

from __future__ import annotations

import contextlib
import fractions
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import PIL.Image


@dataclass(frozen=True)
class VideoSpec:
    name: str
    codec: str = "libx264"
    width: int = 64
    height: int = 48
    frames: int = 30
    fps: int = 15
    container: str = "mp4"
    pix_fmt: str = "yuv420p"
    rotation: int = 0  # counter-clockwise display rotation stored in the container
    frame_durations_ms: tuple[int, ...] = ()  # cycled; set: variable frame rate
    gop: int | None = None  # keyframe interval
    faststart: bool = False  # mp4 index (moov) before the data, as web videos
    bit_rate: int = 2_000_000  # high enough that frames stay tellable apart by colour
    textured: bool = False  # camera-like detail (gradients, edges, noise) instead of flat colour
    x264_params: str = ""  # libx264 options, e.g. "open-gop=1"


# The good videos: several codecs and containers, odd sizes, very short, rotated, VFR, long GOP.
GOOD_VIDEOS = [
    VideoSpec("h264"),
    VideoSpec("mpeg4_avi", codec="mpeg4", container="avi"),
    VideoSpec("vp9_webm", codec="libvpx-vp9", container="webm"),
    VideoSpec("av1_mkv", codec="libsvtav1", width=64, height=64, container="mkv"),
    VideoSpec("odd_size", width=67, height=33, pix_fmt="yuv444p"),
    VideoSpec("portrait", width=36, height=64),
    VideoSpec("one_frame", frames=1),
    VideoSpec("very_short", frames=3, fps=30),
    VideoSpec("rotated", width=64, height=48, rotation=-90),
    VideoSpec("vfr", frames=40, frame_durations_ms=(40, 120, 40, 200)),
    VideoSpec("long_gop", frames=150, fps=30, gop=150),
    # Keyframes that are not IDR: B-frames after them in the file show before them and
    # reference the GOP before, so a decode for those starts one keyframe earlier.
    VideoSpec("open_gop", frames=90, fps=30, x264_params="keyint=20:min-keyint=20:scenecut=0:open-gop=1"),
]
# Camera-like detail where colour conversions and B-frame prediction differ most; short GOPs.
TEXTURED_GOP = VideoSpec("textured_gop", width=160, height=120, frames=75, fps=30, textured=True, bit_rate=800_000,
                         x264_params="keyint=15:min-keyint=15:scenecut=0")


def frame_pixels(index: int, width: int, height: int) -> np.ndarray:
    """Frame `index` as RGB: its index in the red channel (x8) so tests can tell frames apart,
    and a bright block in the top-left quadrant that shows orientation."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = (index * 8) % 256
    image[..., 2] = 40
    image[: height // 2, : width // 2, 1] = 255
    return image


def textured_pixels(index: int, width: int, height: int) -> np.ndarray:
    """Detail that resampling filters disagree on: gradients, hard edges and per-pixel noise."""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), ((x // 7 + y // 5) % 2) * 255], -1)
    noise = rng.integers(-40, 41, (height, width, 3))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@contextlib.contextmanager
def scheduling_kept() -> Iterator[None]:
    """Restores the calling thread's scheduling policy on exit. SVT-AV1 (libsvtav1), run as root,
    puts the thread that opens it under SCHED_FIFO at priority 99; every process started from it
    afterwards (Ray's workers, Milvus) inherits that, and their spinning OpenMP threads then keep
    a 2-core machine's other threads, pytest's included, from ever running."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)


def write_video(path: Path, spec: VideoSpec) -> Path:
    options = {"movflags": "faststart"} if spec.faststart else {}
    with scheduling_kept(), av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(spec.codec, rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, spec.pix_fmt
        stream.bit_rate = spec.bit_rate
        if spec.gop:
            stream.codec_context.gop_size = spec.gop
        if spec.x264_params:
            stream.options = {"x264-params": spec.x264_params}
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        time_base = fractions.Fraction(1, 1000)
        if spec.frame_durations_ms:
            stream.codec_context.time_base = time_base
        pts_ms = 0
        for i in range(spec.frames):
            pixels = (textured_pixels if spec.textured else frame_pixels)(i, spec.width, spec.height)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if spec.frame_durations_ms:
                frame.pts, frame.time_base = pts_ms, time_base
                pts_ms += spec.frame_durations_ms[i % len(spec.frame_durations_ms)]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_video(directory: Path, spec: VideoSpec) -> Path:
    return write_video(directory / f"{spec.name}.{spec.container}", spec)


def make_bad_files(directory: Path) -> dict[str, Path]:
    """Unusable inputs, keyed by kind."""
    data = write_video(directory / "moov_at_end.mp4", VideoSpec("moov_at_end", frames=60)).read_bytes()
    web = write_video(directory / "faststart.mp4", VideoSpec("faststart", frames=60, faststart=True)).read_bytes()
    files = {
        "empty": b"",
        "garbage": np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes(),
        "text": b"this is not a video, just some text\n" * 50,
        "truncated": data[: len(data) // 2],  # index at the end: lost
        "truncated_faststart": web[: len(web) // 2],  # index intact, half the frames missing
        "header_only": data[:64],
    }
    paths = {}
    for kind, content in files.items():
        paths[kind] = directory / f"bad_{kind}.mp4"
        paths[kind].write_bytes(content)
    paths["image"] = directory / "bad_image.png"
    PIL.Image.fromarray(frame_pixels(0, 32, 32)).save(paths["image"])
    paths["missing"] = directory / "does_not_exist.mp4"
    paths["directory"] = directory / "a_directory.mp4"
    paths["directory"].mkdir()
    return paths

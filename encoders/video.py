"""Video files -> sampled, preprocessed uint8 frames: PyAV checks the container, decord decodes.

Every failure surfaces as VideoDecodeError with a one-line reason. decord (FFmpeg 4.1) is the
fast path; files it cannot open but a newer FFmpeg can (AV1, say) are decoded with PyAV.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import av
import decord
import fsspec
import numpy as np
import torch

from .config import SamplingCfg
from .preprocess import resize_center_crop
from .sampling import sample_frame_indices, segment_bounds

logger = logging.getLogger(__name__)

# Largest frame we decode (8K UHD): bounds memory per frame before any pixel is allocated.
MAX_PIXELS = 7680 * 4320
# Frames decoded per decord call: bounds full-resolution memory to a few frames at a time.
DECODE_CHUNK = 4
# Frames to decode forward before a seek is cheaper (PyAV path); about one short GOP.
SEEK_GAP = 30
# FFmpeg demuxers that read single images: a picture is not a video.
IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe"}


class VideoDecodeError(Exception):
    """A video that cannot be used; str() is a one-line reason fit for an error row."""


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    fps: float  # average: frames / duration
    width: int  # as displayed, after rotation
    height: int
    num_frames: int
    codec: str
    rotation: int  # degrees counter-clockwise that the file asks players to apply


@dataclass(frozen=True)
class DecodedSegment:
    start_s: float
    end_s: float
    frames: torch.Tensor  # (n <= max_frames, 3, S, S) uint8
    frame_indices: np.ndarray  # source frame of each sampled slot


def _one_line(error: BaseException) -> str:
    """decord prefixes messages with a timestamp and C++ source location, FFmpeg errors end with
    the file name (already in the row); keep the human part."""
    text = getattr(error, "strerror", None) or str(error)
    text = " ".join(text.split())
    for marker in ("ERROR ", "Check failed: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text[:300] or type(error).__name__


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path for any fsspec URL: the file itself when local, else a temporary copy."""
    protocol, path = fsspec.core.split_protocol(uri)
    if protocol in (None, "file", "local"):
        if not os.path.isfile(path):
            raise VideoDecodeError(f"no such file: {path}" if not os.path.exists(path) else f"not a file: {path}")
        if not os.access(path, os.R_OK):
            raise VideoDecodeError(f"permission denied: {path}")
        yield path
        return
    suffix = os.path.splitext(path)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        try:
            with fsspec.open(uri, "rb") as src:
                shutil.copyfileobj(src, tmp, length=1 << 20)
        except (OSError, ValueError) as e:
            raise VideoDecodeError(f"cannot read {uri}: {_one_line(e)}") from e
        tmp.flush()
        yield tmp.name


def probe_video(path: str) -> tuple[int, int, str, int]:
    """Check the container with PyAV before decord touches it: (width, height, codec, rotation).

    decord crashes or allocates wildly on some broken inputs; FFmpeg's demuxer through PyAV
    raises instead, so every cheap check happens here first.
    """
    if os.path.getsize(path) == 0:
        raise VideoDecodeError("empty file")
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if container.format.name in IMAGE_FORMATS:
                raise VideoDecodeError(f"an image ({container.format.name}), not a video")
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width <= 0 or height <= 0:
                raise VideoDecodeError("video stream has no frame size")
            if width * height > MAX_PIXELS:
                raise VideoDecodeError(f"frame size {width}x{height} exceeds the {MAX_PIXELS}-pixel limit")
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoDecodeError("no decodable video frame")
            return width, height, stream.codec_context.name, int(first.rotation or 0)
    except VideoDecodeError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as e:
        raise VideoDecodeError(f"not a readable video: {_one_line(e)}") from e


class DecordReader:
    """Frame timestamps and frames by index through decord (FFmpeg 4.1, seeks near keyframes)."""

    def __init__(self, path: str):
        # One thread: parallelism comes from running many decoders, not from one.
        self._reader = decord.VideoReader(path, num_threads=1)

    def frame_times(self) -> np.ndarray:
        """(N, 2) start/end seconds of every frame in presentation order."""
        return np.asarray(self._reader.get_frame_timestamp(range(len(self._reader))), dtype=np.float64)

    def frames(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        """(n, H, W, 3) uint8 chunks for sorted indices."""
        for i in range(0, len(indices), DECODE_CHUNK):
            yield self._reader.get_batch(list(indices[i : i + DECODE_CHUNK])).asnumpy()


class PyAVReader:
    """For what decord mishandles: codecs its FFmpeg 4.1 lacks (AV1...) and rotated streams
    (decord turns them itself and then fails on the changed size). Seeks like decord: jump to
    the keyframe before a far-away frame, decode forward from there."""

    def __init__(self, path: str):
        self._path = path
        with av.open(path) as container:
            stream = container.streams.video[0]
            pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
            self._time_base = float(stream.time_base)
            self._frame_step = 1 / float(stream.average_rate or 25)
        if not pts:
            raise VideoDecodeError("no video packets")
        self._pts = np.asarray(pts, dtype=np.int64)

    def frame_times(self) -> np.ndarray:
        starts = (self._pts - self._pts[0]) * self._time_base
        step = np.diff(starts).mean() if len(starts) > 1 else self._frame_step
        return np.stack([starts, np.append(starts[1:], starts[-1] + step)], axis=1)

    def frames(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        with av.open(self._path) as container:
            stream = container.streams.video[0]
            decoded = None  # frames from the last seek on
            position = -1  # index of the last frame decoded
            for index in indices:
                if decoded is None or index - position > SEEK_GAP:
                    container.seek(int(self._pts[index]), backward=True, any_frame=False, stream=stream)
                    decoded = container.decode(stream)
                for frame in decoded:
                    position = int(np.searchsorted(self._pts, frame.pts)) if frame.pts is not None else position + 1
                    if position >= index:
                        yield frame.to_ndarray(format="rgb24")[None]
                        break
                else:
                    raise VideoDecodeError(f"stream ended before frame {index}")


def open_reader(path: str, rotation: int) -> DecordReader | PyAVReader:
    if rotation % 360 == 0:
        try:
            return DecordReader(path)
        except (RuntimeError, decord.DECORDError) as e:
            logger.info("decord cannot open %s (%s); decoding with PyAV", path, _one_line(e))
    return PyAVReader(path)


def _sampled_frames(reader, indices: np.ndarray, rotation: int, size: int) -> torch.Tensor:
    """Decode each distinct index once, turn upright, resize and crop; keep slot order."""
    unique, slot_of = np.unique(indices, return_inverse=True)
    chunks = []
    for chunk in reader.frames(unique):
        upright = np.rot90(chunk, k=rotation // 90, axes=(1, 2)) if rotation % 360 else chunk
        chunks.append(resize_center_crop(upright, size))
    return torch.cat(chunks)[torch.from_numpy(slot_of)]


def decode_video(
    uri: str, sampling: SamplingCfg, image_size: int, segment_seconds: float | None = None, per_slot: int = 1
) -> tuple[VideoInfo, list[DecodedSegment]]:
    """Sample a video the paper's way (whole, or per segment) into uint8 (n, 3, S, S) clips.

    per_slot > 1 (training): n = slots * per_slot jitter candidates, slot-major (see
    sampling.candidate_grid_positions). Raises VideoDecodeError with a one-line reason for anything unusable.
    """
    with local_copy(uri) as path:
        width, height, codec, rotation = probe_video(path)
        try:
            reader = open_reader(path, rotation)
            times = reader.frame_times()
            if len(times) == 0:
                raise VideoDecodeError("no frames")
            duration = float(times[-1, 1])
            segments = []
            for start, end in segment_bounds(duration, segment_seconds):
                indices = sample_frame_indices(times[:, 0], sampling, start, end, per_slot)
                frames = _sampled_frames(reader, indices, rotation, image_size)
                segments.append(DecodedSegment(start, end, frames, indices))
        except VideoDecodeError:
            raise
        except (RuntimeError, decord.DECORDError, av.FFmpegError, ValueError, IndexError) as e:
            raise VideoDecodeError(f"decode failed: {_one_line(e)}") from e
    if rotation % 180:
        width, height = height, width
    info = VideoInfo(duration, len(times) / duration if duration > 0 else 0.0, width, height, len(times),
                     codec, rotation)
    return info, segments

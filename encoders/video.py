"""Video files -> sampled, preprocessed uint8 frames, decoded with PyAV at the cost floor.

Two passes over the file: one reads every packet's timestamp and keyframe flag (no decoding),
the other decodes only the packets the sampled frames need (frame_plan), each at most once.
PyAV's FFmpeg beats decord's (FFmpeg 4.1) on one sequential pass of 720p H.264 and lets the
plan skip frames no one references (docs/benchmarks.md, "Threads, and PyAV against decord").
Every failure surfaces as VideoDecodeError with a one-line reason.
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
import fsspec
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem

from errors import UserError, one_line

from .config import SamplingCfg
from .frame_plan import FrameTable, decode_runs
from .preprocess import resize_center_crop
from .sampling import sample_frame_indices, sample_keyframe_indices, segment_bounds

logger = logging.getLogger(__name__)

# Largest frame we decode (8K UHD): bounds memory per frame before any pixel is allocated.
MAX_PIXELS = 7680 * 4320
# Options for the opening probe: read stream parameters without decoding a frame.
LEAN_PROBE = {"skip_frame": "all"}
# Decoders that read skip_frame for every frame, so unwanted unreferenced frames can be skipped one
# by one. libdav1d (AV1) reads it only when opened, and setting it later slows it down severalfold.
SKIPS_UNREFERENCED = {"h264", "hevc", "vp8", "vp9", "mpeg4", "mpeg2video", "mpeg1video", "h263"}
# Packets to read through before seeking instead: a seek and its first packet cost what reading
# a few packets does (docs/benchmarks.md, "Why the constants are what they are").
SEEK_AHEAD = 16
# FFmpeg demuxers that read single images: a picture is not a video.
IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe"}


class VideoDecodeError(UserError):
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
    frame_times: np.ndarray  # seconds: when each sampled frame starts showing


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path for any fsspec URL: the file itself when local, else a temporary copy."""
    fs, path = fsspec.core.url_to_fs(uri)
    if isinstance(fs, LocalFileSystem):
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
            raise VideoDecodeError(f"cannot read {uri}: {one_line(e)}") from e
        tmp.flush()
        yield tmp.name


@contextlib.contextmanager
def open_video(path: str) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The container and its first video stream, checked before any frame is decoded."""
    with _open_container(path) as container:
        yield container, _checked_stream(container)


def _open_container(path: str) -> av.container.InputContainer:
    """Opening normally decodes the first frame to learn the pixel format (as costly as a
    keyframe); telling that probe to discard frames makes opening several times cheaper
    (docs/benchmarks.md, "Why the constants are what they are"). Streams whose container does not
    state the frame size are opened the ordinary way."""
    if os.path.getsize(path) == 0:
        raise VideoDecodeError("empty file")
    try:
        container = av.open(path, metadata_errors="ignore", options=LEAN_PROBE)
        if container.streams.video and not container.streams.video[0].codec_context.width:
            container.close()
            container = av.open(path, metadata_errors="ignore")
        return container
    except (av.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as e:
        raise VideoDecodeError(f"not a readable video: {one_line(e)}") from e


def _checked_stream(container) -> av.video.stream.VideoStream:
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
    # One thread per decoder: an index run decodes many videos at once, one per CPU, and a
    # decoder's own threads cost CPU-seconds for no throughput (docs/benchmarks.md, "Why the
    # constants are what they are").
    stream.codec_context.thread_count = 1
    return stream


def _packets(container, stream) -> Iterator[av.Packet]:
    """The stream's packets in decode order; those without a timestamp (the end-of-stream
    marker) are not frames."""
    return (packet for packet in container.demux(stream) if packet.pts is not None)


def read_frame_table(container, stream) -> FrameTable:
    """Every frame's timestamp and keyframe flag from one demux pass: reading a packet costs a
    small fraction of decoding one (docs/benchmarks.md, "Why the constants are what they are")."""
    rows = [(packet.pts, packet.is_keyframe, packet.duration) for packet in _packets(container, stream)]
    if not rows:
        raise VideoDecodeError("no video packets")
    indexed = len(stream.index_entries)
    if indexed == stream.frames > len(rows):  # the container's index lists frames the file lacks
        raise VideoDecodeError(f"truncated: {len(rows)} of {indexed} frames are in the file")
    pts, keyframes, durations = zip(*rows)
    time_base = float(stream.time_base)
    single_frame_s = durations[0] * time_base if durations[0] else 1 / float(stream.average_rate or 25)
    return FrameTable.from_packets(pts, keyframes, time_base, single_frame_s)


def _index_arrays(container, stream) -> tuple[np.ndarray, np.ndarray] | None:
    """Each frame's decode time and keyframe flag from a container index that lists every frame;
    None when it lists some only. A faststart file cut short lists frames it lacks: refused."""
    entries = stream.index_entries
    count = len(entries)
    if count == 0 or count != stream.frames:
        return None
    # One pass: each entry is a Python object made on access, a large share of keyframe mode's table
    # (docs/benchmarks.md, "Why the constants are what they are").
    dts, keyframe, ends = np.array([(entry.timestamp, entry.is_keyframe, entry.pos + entry.size)
                                    for entry in entries], np.int64).T
    present = int((ends <= os.path.getsize(container.name)).sum())
    if present < count:
        raise VideoDecodeError(f"truncated: {present} of {count} frames are in the file")
    return dts, keyframe.astype(bool)


def _keyframe_pts(container, stream, dts: np.ndarray, keys: np.ndarray, delay: int) -> list[int] | None:
    """Each keyframe's presentation time, from the two packets read after a seek to it; None where
    the index and a seek disagree or a GOP is open (a later packet shows before its keyframe)."""
    key_pts = []
    for position in keys.tolist():  # seeks go by presentation time
        container.seek(int(dts[position] + delay), stream=stream, backward=True)
        packets = _packets(container, stream)
        packet, after = next(packets, None), next(packets, None)
        if packet is None or packet.dts != dts[position] or not packet.is_keyframe:
            return None
        if after is not None and after.pts < packet.pts:
            return None
        key_pts.append(packet.pts)
    return key_pts


def _closed_gop_pts(key_pts: list[int], keys: np.ndarray, count: int, last_pts: int) -> np.ndarray | None:
    """Every frame's presentation time in closed GOPs: a GOP's frames show between its keyframe and
    the next, evenly spaced; the last GOP ends at `last_pts`. None where that places no frame apart."""
    if last_pts <= key_pts[-1] and count > keys[-1] + 1:
        return None
    gop_ends = [*key_pts[1:], last_pts]
    gop_sizes = np.diff(np.append(keys, count))
    pts = np.concatenate([np.linspace(start, end, size, endpoint=end == last_pts).round().astype(np.int64)
                          for start, end, size in zip(key_pts, gop_ends, gop_sizes)])
    return None if np.any(np.diff(pts) <= 0) else pts  # keyframes too close in time for the frames between


def read_keyframe_table(container, stream) -> FrameTable | None:
    """Keyframe mode's table without reading every packet. Where the container's index lists every
    frame (MP4, MOV), it gives each frame's decode time, keyframe flag and bytes; two packets read
    per keyframe (a seek each) give that keyframe's presentation time and show its GOP is closed
    (nothing after it in the file shows before it). In a closed-GOP stream
    the frames decoded between two keyframes show between them: they are counted there, evenly
    spaced (keyframe mode never decodes them), and the last shows at the last decode time plus
    the stream's reorder delay.

    None where reading every packet is the way: a partial index (Matroska and WebM cues list some
    keyframes only), no keyframe flags or a first frame that is not one, keyframes too dense for a
    seek each, an index a seek does not agree with, an open GOP.
    """
    indexed = _index_arrays(container, stream)
    if indexed is None:
        return None
    dts, keyframe = indexed
    count, keys = len(dts), np.flatnonzero(keyframe)
    first = next(_packets(container, stream), None)
    if len(keys) == 0 or len(keys) * SEEK_AHEAD > count or keys[0] != 0 or first is None or first.dts != dts[0]:
        return None
    delay = first.pts - first.dts  # the decoder's reorder delay, in the stream's time base
    key_pts = _keyframe_pts(container, stream, dts, keys, delay)
    pts = _closed_gop_pts(key_pts, keys, count, int(dts[-1] + delay)) if key_pts is not None else None
    if pts is None:
        return None
    time_base = float(stream.time_base)
    steps = np.diff((np.unique(dts) - dts.min()) * time_base)  # the shortest frame shows last, as read_frame_table
    last_frame_s = float(steps.min()) if len(steps) else 1 / float(stream.average_rate or 25)
    starts = (pts - pts[0]) * time_base
    return FrameTable(pts, starts, float(starts[-1] + last_frame_s), np.arange(count, dtype=np.int64), keyframe,
                      keyframe_times_only=True)


class PacketCursor:
    """One stream's packets read forward in decode order. Over a gap it seeks where the container
    indexes every frame (MP4, MOV: a seek lands on the keyframe asked for) and reads through
    otherwise: reading a packet costs a small fraction of decoding one (docs/benchmarks.md, "Why the
    constants are what they are")."""

    def __init__(self, container, stream, table: FrameTable):
        self._container, self._stream = container, stream
        decode_order = np.argsort(table.packet)
        self._pts_at = table.pts[decode_order]  # the pts of each decode position
        # Packets are told apart by pts: by the keyframes' alone where the others' are estimates.
        known = table.keyframe[decode_order] if table.keyframe_times_only else np.ones(len(table), bool)
        self._position_of = {int(self._pts_at[position]): int(position) for position in np.flatnonzero(known)}
        self._seekable = len(stream.index_entries) == len(table)
        self._packets = _packets(container, stream)
        self._next = 0  # decode position of the packet the reader would return next

    def between(self, first: int, last: int) -> Iterator[av.Packet]:
        """Packets first..last (decode positions, inclusive)."""
        if self._seekable and first - self._next > SEEK_AHEAD:
            self._container.seek(int(self._pts_at[first]), stream=self._stream, backward=True)
            self._packets = _packets(self._container, self._stream)
        for packet in self._packets:
            position = self._position_of.get(packet.pts, -1)
            self._next = position + 1
            if position < first:
                continue  # a GOP, or the rest of one, that no wanted frame needs
            yield packet
            if position >= last:
                return


def decode_frames(path: str, table: FrameTable, wanted: np.ndarray, size: int) -> tuple[dict[int, torch.Tensor], int]:
    """Decode the wanted frames (presentation indices), each packet at most once; returns
    index -> upright, resized, cropped (3, size, size) uint8, and the display rotation.

    Only packets in a decode run (frame_plan.decode_runs) reach the decoder, and each run ends by
    draining it, so nothing past the run's last wanted packet is decoded. Inside a run, frames no
    other frame references and no one wants are skipped (FFmpeg's skip_frame NONREF): the wanted
    frames stay exact, and decoding costs less (docs/benchmarks.md, "Why the constants are what
    they are").
    """
    index_of = {int(table.pts[i]): int(i) for i in wanted}
    frames, rotation = {}, None

    def keep(received: list[av.VideoFrame]) -> None:  # at once: one full-size frame in memory at a time
        nonlocal rotation
        for frame in received:
            if frame.pts in index_of:
                rotation = int(frame.rotation or 0) if rotation is None else rotation
                frames[index_of[frame.pts]] = _upright_resized(frame, rotation, size)

    with open_video(path) as (container, stream):
        decoder, cursor = stream.codec_context, PacketCursor(container, stream, table)
        skip_unreferenced = decoder.name in SKIPS_UNREFERENCED
        for first, last in decode_runs(table, wanted):
            for packet in cursor.between(first, last):
                if skip_unreferenced:
                    decoder.skip_frame = "DEFAULT" if packet.pts in index_of else "NONREF"
                try:
                    keep(decoder.decode(packet))
                except av.InvalidDataError:  # a damaged packet: FFmpeg conceals what refers to it,
                    continue  # as players do; a wanted frame it held is reported missing below
            keep(decoder.decode(None))  # drain: the run's last frames leave the reorder buffer
            decoder.flush_buffers()
    missing = sorted(set(index_of.values()) - set(frames))
    if missing:
        raise VideoDecodeError("no decodable video frame" if not frames else f"frame {missing[0]} did not decode")
    return frames, rotation


def _upright_resized(frame: av.VideoFrame, rotation: int, size: int) -> torch.Tensor:
    rgb = frame.to_ndarray(format="rgb24")
    if rotation % 360:
        rgb = np.rot90(rgb, k=rotation // 90)
    return resize_center_crop(rgb[None], size)[0]


def _frame_table(path: str, seek: str) -> tuple[FrameTable, tuple[int, int, str]]:
    """The table the seek mode needs, and the stream's (width, height, codec)."""
    with open_video(path) as (container, stream):
        context = stream.codec_context
        described = context.width, context.height, context.name
        table = read_keyframe_table(container, stream) if seek == "keyframe" else None
    if table is None:  # from the start of a freshly opened file: the keyframe table's seeks moved this one
        with open_video(path) as (container, stream):
            table = read_frame_table(container, stream)
    return table, described


def pick_frames(table: FrameTable, sampling: SamplingCfg, start_s: float, end_s: float, per_slot: int) -> np.ndarray:
    """Frame indices for one span: the paper's frames (exact), or the nearest keyframes."""
    if sampling.seek == "keyframe":
        return sample_keyframe_indices(table.starts, table.keyframe, sampling, start_s, end_s, per_slot)
    return sample_frame_indices(table.starts, sampling, start_s, end_s, per_slot)


def decode_video(
    uri: str, sampling: SamplingCfg, image_size: int, segment_seconds: float | None = None, per_slot: int = 1
) -> tuple[VideoInfo, list[DecodedSegment]]:
    """Sample a video the paper's way (whole, or per segment) into uint8 (n, 3, S, S) clips.

    All segments' frames come from one decode pass (each packet decoded at most once).
    sampling.seek "keyframe" takes the nearest keyframes instead (see sampling.sample_keyframe_indices).
    per_slot > 1 (training): n = slots * per_slot jitter candidates, slot-major (see
    sampling.candidate_grid_positions). Raises VideoDecodeError with a one-line reason for anything unusable.
    """
    with local_copy(uri) as path:
        try:
            table, (width, height, codec) = _frame_table(path, sampling.seek)
            spans = segment_bounds(table.duration, segment_seconds)
            picks = [pick_frames(table, sampling, start, end, per_slot) for start, end in spans]
            frames, rotation = decode_frames(path, table, np.unique(np.concatenate(picks)), image_size)
        except VideoDecodeError:
            raise
        except (av.FFmpegError, ValueError, IndexError) as e:
            raise VideoDecodeError(f"decode failed: {one_line(e)}") from e
    segments = [DecodedSegment(start, end, torch.stack([frames[i] for i in indices.tolist()]), indices,
                               table.starts[indices])
                for (start, end), indices in zip(spans, picks)]
    if rotation % 180:
        width, height = height, width
    info = VideoInfo(table.duration, len(table) / table.duration, width, height, len(table), codec, rotation)
    return info, segments

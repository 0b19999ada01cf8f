"""Which packets to decode for a set of wanted frames: pure functions of a stream's frame table.

Exact frames cost a decode from the keyframe before them; the plan decodes each packet at most
once for all the frames a video needs (samples, segments, jitter candidates together), starts at
a keyframe only where that skips packets, and decodes straight on inside a GOP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameTable:
    """Every frame of a video stream from one demux pass (no decoding), in presentation order."""

    pts: np.ndarray  # (N,) int64 presentation timestamps in the stream's time base, increasing
    starts: np.ndarray  # (N,) seconds from the first frame
    duration: float  # seconds: the last start plus the last frame's display time
    packet: np.ndarray  # (N,) int64 position of each frame's packet in decode (file) order
    keyframe: np.ndarray  # (N,) bool: decodable without any earlier packet
    # Only the keyframes' pts were read; the others are estimates that order and count the frames
    # (video.read_keyframe_table), so only keyframes may be decoded by this table.
    keyframe_times_only: bool = False

    @classmethod
    def from_packets(cls, pts, keyframes, time_base: float, single_frame_s: float,
                     keyframe_times_only: bool = False) -> FrameTable:
        """From per-packet values in decode order. The last frame shows as long as the shortest
        frame interval (containers rarely know its true length); a lone frame for single_frame_s."""
        pts = np.asarray(pts, np.int64)
        order = np.argsort(pts, kind="stable")
        starts = (pts[order] - pts[order[0]]) * time_base
        steps = np.diff(starts)
        last = steps[steps > 0].min() if (steps > 0).any() else single_frame_s
        return cls(pts[order], starts, float(starts[-1] + last), order.astype(np.int64),
                   np.asarray(keyframes, bool)[order], keyframe_times_only)

    def __len__(self) -> int:
        return len(self.pts)


def gop_start(table: FrameTable) -> np.ndarray:
    """(N,) decode position of the keyframe a decode must start from to output each frame exactly.

    The last keyframe before the frame in decode order, and not after it on screen: a frame that
    follows an open-GOP keyframe in the file but shows before it may reference the GOP before.
    """
    key_frames = np.flatnonzero(table.keyframe)
    key_frames = key_frames[np.argsort(table.packet[key_frames])]  # keyframes in decode order
    key_packets = table.packet[key_frames]
    slot = np.searchsorted(key_packets, table.packet, side="right") - 1
    while True:  # step back over keyframes shown after the frame (open GOPs; rare)
        late = (slot >= 0) & (table.pts[key_frames[np.maximum(slot, 0)]] > table.pts)
        if not late.any():
            break
        slot[late] -= 1
    # A frame before any keyframe (a stream that starts mid-GOP) decodes from the first packet.
    return np.where(slot >= 0, key_packets[np.maximum(slot, 0)], 0)


def decode_runs(table: FrameTable, wanted: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive [first, last] packet ranges in decode order that output every wanted frame.

    A range starts at a wanted frame's keyframe and ends at the last wanted packet reached from
    it; ranges that touch are merged (decode straight on), so no packet is in two ranges.
    """
    if len(wanted) == 0:
        return []
    wanted = np.unique(wanted)
    firsts, lasts = gop_start(table)[wanted], table.packet[wanted]
    runs: list[list[int]] = []
    for first, last in sorted(zip(firsts.tolist(), lasts.tolist())):
        if runs and first <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], last)
        else:
            runs.append([first, last])
    return [(first, last) for first, last in runs]


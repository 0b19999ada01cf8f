"""The paper's frame sampling as pure functions of frame timestamps (no decoding here)."""

from __future__ import annotations

import numpy as np

from .config import SamplingCfg


def grid_positions(num_grid: int, sampling: SamplingCfg) -> np.ndarray:
    """Which 5 fps grid samples the paper keeps: every feature_framerate-th, then <= max_frames uniformly.

    The paper's code: linspace(0, n - 1, n // feature_framerate) over the grid, then
    linspace(0, m - 1, max_frames) over that when it is longer than max_frames (dtype int).
    One deviation: where n < feature_framerate the paper keeps no frame; we keep one.
    """
    kept = np.linspace(0, num_grid - 1, num=max(1, num_grid // sampling.feature_framerate), dtype=int)
    if len(kept) > sampling.max_frames:
        kept = kept[np.linspace(0, len(kept) - 1, num=sampling.max_frames, dtype=int)]
    return kept


def candidate_grid_positions(num_grid: int, sampling: SamplingCfg, per_slot: int) -> np.ndarray:
    """(slots, per_slot) grid samples for training-time jitter: each slot's candidates are spread
    evenly over its stretch of the grid, from the paper's pick up to the next slot's pick.

    Column 0 is the paper's pick (grid_positions); drawing one column per slot at random gives
    random offsets within the sampling grid. Candidates, not every grid sample, so what a training
    run caches per video is bounded however long the video is.
    """
    kept = grid_positions(num_grid, sampling)
    ends = np.maximum(np.append(kept[1:], num_grid), kept + 1)  # exclusive end of each slot's stretch
    spread = np.linspace(0.0, 1.0, per_slot)[None, :] * (ends - 1 - kept)[:, None]
    return kept[:, None] + np.rint(spread).astype(int)


def grid_times(start_s: float, end_s: float, fps: float) -> np.ndarray:
    """Times of the fps grid over [start_s, end_s), as `ffmpeg -r fps` samples a clip (at least one)."""
    count = max(1, int(np.floor((end_s - start_s) * fps + 0.5)))
    return start_s + np.arange(count) / fps


def frames_shown_at(times: np.ndarray, frame_starts: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each time: the last frame starting at or before it.

    Works from real timestamps, so variable-frame-rate video samples at true times.
    """
    # A microsecond of slack absorbs float rounding of container timestamps.
    shown = np.searchsorted(frame_starts, times + 1e-6, side="right") - 1
    return np.clip(shown, 0, len(frame_starts) - 1)


def slot_times(sampling: SamplingCfg, start_s: float, end_s: float, per_slot: int = 1) -> np.ndarray:
    """Times the paper's rule samples in the span [start_s, end_s) (<= max_frames slots).

    per_slot > 1: that many jitter candidates per slot (candidate_grid_positions), slot-major.
    """
    times = grid_times(start_s, end_s, sampling.fps)
    return times[candidate_grid_positions(len(times), sampling, per_slot).reshape(-1)]


def sample_frame_indices(
    frame_starts: np.ndarray, sampling: SamplingCfg, start_s: float, end_s: float, per_slot: int = 1
) -> np.ndarray:
    """Source frame indices the paper's rule picks from the span [start_s, end_s): the frames on
    screen at slot_times."""
    return frames_shown_at(slot_times(sampling, start_s, end_s, per_slot), frame_starts)


def nearest_keyframes(times: np.ndarray, frame_starts: np.ndarray, keyframe: np.ndarray) -> np.ndarray:
    """Index of the keyframe shown nearest each time (the earlier one on a tie)."""
    keys = np.flatnonzero(keyframe)
    if len(keys) == 0:
        keys = np.array([0])  # no flagged keyframe: the stream's first frame stands for all
    key_times = frame_starts[keys]
    after = np.clip(np.searchsorted(key_times, times, side="left"), 0, len(keys) - 1)
    before = np.maximum(after - 1, 0)
    use_before = np.abs(times - key_times[before]) <= np.abs(key_times[after] - times)
    return keys[np.where(use_before, before, after)]


def sample_keyframe_indices(
    frame_starts: np.ndarray, keyframe: np.ndarray, sampling: SamplingCfg, start_s: float, end_s: float,
    per_slot: int = 1,
) -> np.ndarray:
    """`seek: keyframe`: the keyframe nearest each of the paper's slot times (decoded once each).

    Slots that land on the same keyframe all show it. The other choice, each keyframe once and
    the rest of the slots masked, moves frames to slot positions (the temporal transformer's
    position embeddings) that are not their times and leaves slots empty that a full-length
    clip always fills; the TDB then sees differences between frames seconds apart where it
    learnt neighbours. Repeating keeps most of exact mode's text->video R@1 where once each loses
    nearly all of it (docs/benchmarks.md, "What `--seek keyframe` costs in quality": five keyframes
    a clip). Repeats read as no motion between those slots, which is what the keyframes can tell.
    """
    return nearest_keyframes(slot_times(sampling, start_s, end_s, per_slot), frame_starts, keyframe)


def segment_bounds(duration_s: float, segment_seconds: float | None) -> list[tuple[float, float]]:
    """[start, end) spans covering the video; one span when segment_seconds is None.

    A last piece shorter than half a segment joins the previous one, so no segment is a sliver.
    """
    if not segment_seconds or duration_s <= segment_seconds:
        return [(0.0, duration_s)]
    starts = list(np.arange(0.0, duration_s, segment_seconds))
    if len(starts) > 1 and duration_s - starts[-1] < segment_seconds / 2:
        starts.pop()
    ends = starts[1:] + [duration_s]
    return [(float(s), float(e)) for s, e in zip(starts, ends)]

"""Frame sampling follows the paper's rule (5 fps grid, every feature_framerate-th, <= 12 uniformly)."""

from __future__ import annotations

import numpy as np
import pytest

from encoders import SamplingCfg
from encoders.sampling import (candidate_grid_positions, frames_shown_at, grid_positions, grid_times,
                               nearest_keyframes, sample_frame_indices, sample_keyframe_indices, segment_bounds)


def paper_rule(num_extracted: int, feature_framerate: int, max_frames: int) -> np.ndarray:
    """The paper's RawFrameExtractor.video_to_tensor, restated on a list of extracted frame files."""
    current = np.linspace(0, num_extracted - 1, num=num_extracted // feature_framerate, dtype=int)
    if max_frames >= len(current):
        return current
    return current[np.linspace(0, len(current) - 1, num=max_frames, dtype=int)]


@pytest.mark.parametrize("feature_framerate", [1, 2, 3])
@pytest.mark.parametrize("max_frames", [12, 5])
def test_grid_positions_equal_the_paper_rule(feature_framerate, max_frames):
    cfg = SamplingCfg(feature_framerate=feature_framerate, max_frames=max_frames)
    for n in range(feature_framerate, 400):
        np.testing.assert_array_equal(grid_positions(n, cfg), paper_rule(n, feature_framerate, max_frames))


def test_clips_shorter_than_one_step_keep_one_frame_where_the_paper_keeps_none():
    assert len(paper_rule(1, 2, 12)) == 0
    np.testing.assert_array_equal(grid_positions(1, SamplingCfg(feature_framerate=2)), [0])


def test_grid_is_5_fps_like_ffmpeg_r5():
    np.testing.assert_allclose(grid_times(0.0, 2.0, 5.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])
    np.testing.assert_allclose(grid_times(10.0, 10.5, 5.0), [10.0, 10.2, 10.4])
    assert len(grid_times(0.0, 0.05, 5.0)) == 1


def test_variable_frame_rate_samples_the_frame_on_screen():
    starts = np.array([0.0, 0.04, 0.16, 0.20, 0.40, 0.44, 0.56, 0.60])
    np.testing.assert_array_equal(frames_shown_at(np.array([0.0, 0.1, 0.2, 0.39, 0.4, 0.7]), starts),
                                  [0, 1, 3, 3, 4, 7])


def test_sample_frame_indices_on_a_constant_rate_clip():
    starts = np.arange(30) / 15.0  # 2 s at 15 fps: grid 0, .2 ... 1.8; every 2nd; 5 kept
    np.testing.assert_array_equal(sample_frame_indices(starts, SamplingCfg(), 0.0, 2.0), [0, 6, 12, 18, 27])


@pytest.mark.parametrize("num_grid", [1, 3, 24, 150, 3000])
def test_jitter_candidates_start_at_the_paper_pick_and_stay_in_its_slot(num_grid):
    kept = grid_positions(num_grid, SamplingCfg())
    candidates = candidate_grid_positions(num_grid, SamplingCfg(), per_slot=4)
    assert candidates.shape == (len(kept), 4)
    np.testing.assert_array_equal(candidates[:, 0], kept)
    np.testing.assert_array_equal(candidate_grid_positions(num_grid, SamplingCfg(), per_slot=1)[:, 0], kept)
    upper = np.append(kept[1:], num_grid)  # each slot's stretch ends where the next slot's pick is
    assert np.all(candidates >= kept[:, None]) and np.all(candidates < np.maximum(upper, kept + 1)[:, None])
    assert np.all(np.diff(candidates, axis=1) >= 0)


def test_jitter_candidates_on_a_synth_clip_cover_both_grid_frames_of_each_slot():
    """4.8 s: 24 grid samples, every 2nd kept: each slot owns two grid samples, drawn equally often."""
    candidates = candidate_grid_positions(24, SamplingCfg(), per_slot=4)
    np.testing.assert_array_equal(candidates[0], [0, 0, 1, 1])
    np.testing.assert_array_equal(candidates[-1], [23, 23, 23, 23])


def test_long_video_keeps_at_most_max_frames_spread_uniformly():
    starts = np.arange(30 * 600) / 30.0  # 10 minutes
    indices = sample_frame_indices(starts, SamplingCfg(), 0.0, 600.0)
    assert len(indices) == 12 and indices[0] == 0 and indices[-1] > 30 * 590
    assert np.all(np.diff(indices) > 0)


def test_segments_cover_the_video_without_slivers():
    assert segment_bounds(25.0, None) == [(0.0, 25.0)]
    assert segment_bounds(24.0, 10.0) == [(0.0, 10.0), (10.0, 24.0)]
    assert segment_bounds(27.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 27.0)]
    assert segment_bounds(8.0, 10.0) == [(0.0, 8.0)]


def test_keyframe_seek_gives_each_slot_its_nearest_keyframe():
    starts = np.arange(300) / 30.0  # 10 s at 30 fps, a keyframe every 2 s (0, 60, 120, 180, 240)
    keyframe = np.arange(300) % 60 == 0
    exact = sample_frame_indices(starts, SamplingCfg(), 0.0, 10.0)
    picks = sample_keyframe_indices(starts, keyframe, SamplingCfg(), 0.0, 10.0)
    assert len(picks) == len(exact) == 12  # twelve slots, five keyframes: slots share them
    np.testing.assert_array_equal(picks, [0, 0, 60, 60, 120, 120, 180, 180, 180, 240, 240, 240])
    nearest = nearest_keyframes(starts[exact], starts, keyframe)
    assert set(nearest.tolist()) == set(picks.tolist())
    key_times = starts[keyframe]
    closest = np.abs(key_times[None, :] - starts[exact][:, None]).min(axis=1)
    np.testing.assert_allclose(np.abs(starts[nearest] - starts[exact]), closest)


def test_keyframe_seek_candidates_keep_the_slot_major_shape():
    starts, keyframe = np.arange(300) / 30.0, np.arange(300) % 60 == 0
    picks = sample_keyframe_indices(starts, keyframe, SamplingCfg(), 0.0, 10.0, per_slot=3)
    assert picks.shape == (12 * 3,) and set(picks.tolist()) <= {0, 60, 120, 180, 240}


def test_nearest_keyframe_breaks_ties_towards_the_earlier_one_and_copes_with_none():
    starts = np.arange(10) / 10.0
    keyframe = np.isin(np.arange(10), [0, 4])
    np.testing.assert_array_equal(nearest_keyframes(np.array([0.2, 0.21, 0.9]), starts, keyframe), [0, 4, 4])
    np.testing.assert_array_equal(nearest_keyframes(np.array([0.5]), starts, np.zeros(10, bool)), [0])


def test_seek_mode_is_checked():
    with pytest.raises(ValueError, match="seek 'nearest' is not one of"):
        SamplingCfg(seek="nearest")

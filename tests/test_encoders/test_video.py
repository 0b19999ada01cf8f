"""Decoding real files of several codecs and shapes; every bad file is one typed, one-line error."""

from __future__ import annotations

import os
import subprocess
import sys

import av
import decord
import fsspec
import numpy as np
import pytest

from encoders import SamplingCfg
from encoders import video as video_module
from encoders.preprocess import resize_center_crop
from encoders.sampling import sample_frame_indices, segment_bounds
from encoders.frame_plan import decode_runs
from encoders.video import VideoDecodeError, decode_video
from media import GOOD_VIDEOS, TEXTURED_GOP, make_video

SIZE = 32
SIZE_EXACT = 64  # larger crops keep more of the detail where two decoders could differ


@pytest.fixture(scope="module")
def textured_gop(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("textured"), TEXTURED_GOP)


@pytest.mark.parametrize("spec", GOOD_VIDEOS, ids=lambda s: s.name)
def test_good_videos_decode_to_sampled_uint8_clips(good_videos, spec):
    info, segments = decode_video(str(good_videos[spec.name]), SamplingCfg(), SIZE)
    assert info.num_frames == spec.frames
    assert len(segments) == 1
    frames = segments[0].frames
    assert frames.dtype.is_floating_point is False and frames.shape[1:] == (3, SIZE, SIZE)
    assert 1 <= len(frames) <= 12
    # Each frame carries 8 * its index in the red channel: the sampled frames are the chosen ones.
    red = frames[:, 0].float().mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(red, (segments[0].frame_indices * 8) % 256, atol=6)


def test_sampled_indices_follow_the_paper_on_a_real_file(good_videos):
    _, [segment] = decode_video(str(good_videos["h264"]), SamplingCfg(), SIZE)  # 2 s at 15 fps
    np.testing.assert_array_equal(segment.frame_indices, [0, 6, 12, 18, 27])
    _, [segment] = decode_video(str(good_videos["h264"]), SamplingCfg(feature_framerate=1), SIZE)
    np.testing.assert_array_equal(segment.frame_indices, [0, 3, 6, 9, 12, 15, 18, 21, 24, 27])


def test_jitter_candidates_decode_slot_major_and_start_with_the_paper_frames(good_videos):
    uri, sampling = str(good_videos["h264"]), SamplingCfg()
    _, [plain] = decode_video(uri, sampling, SIZE)
    _, [jittered] = decode_video(uri, sampling, SIZE, per_slot=3)
    assert jittered.frames.shape == (3 * len(plain.frames), 3, SIZE, SIZE)
    per_slot = jittered.frames.reshape(len(plain.frames), 3, 3, SIZE, SIZE)
    np.testing.assert_array_equal(per_slot[:, 0].numpy(), plain.frames.numpy())
    np.testing.assert_array_equal(jittered.frame_indices.reshape(-1, 3)[:, 0], plain.frame_indices)


def test_variable_frame_rate_video_is_sampled_at_true_times(good_videos):
    # Frame durations cycle 40, 120, 40, 200 ms: starts 0, .04, .16, .20, .40 ...
    info, [segment] = decode_video(str(good_videos["vfr"]), SamplingCfg(), SIZE)
    assert info.duration_s == pytest.approx(3.84, abs=0.01)
    np.testing.assert_array_equal(segment.frame_indices, [0, 4, 8, 12, 19, 23, 27, 31, 36])


def test_rotated_video_is_turned_upright(good_videos):
    """Stored 64x48 with a -90 degree display matrix: shown 48x64, top-left block moves top-right."""
    info, [segment] = decode_video(str(good_videos["rotated"]), SamplingCfg(), SIZE)
    assert (info.width, info.height, info.rotation) == (48, 64, -90)
    green = segment.frames[0, 1].float().numpy()
    half = SIZE // 2
    assert green[: half - 4, half + 4 :].mean() > 200  # top right
    assert green[: half - 4, : half - 4].mean() < 50  # top left


def test_long_video_is_cut_into_segments(good_videos):
    info, segments = decode_video(str(good_videos["long_gop"]), SamplingCfg(), SIZE, segment_seconds=2.0)
    assert info.duration_s == pytest.approx(5.0)
    assert [(s.start_s, s.end_s) for s in segments] == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    assert segments[1].frame_indices[0] == 60  # first grid time of the span is 2.0 s


def test_fsspec_urls_are_read(good_videos):
    with fsspec.open("memory://videos/clip.mp4", "wb") as f:
        f.write(good_videos["h264"].read_bytes())
    info, [segment] = decode_video("memory://videos/clip.mp4", SamplingCfg(), SIZE)
    assert info.num_frames == 30 and len(segment.frames) == 5


BAD_KINDS = ["empty", "garbage", "text", "truncated", "truncated_faststart", "header_only", "image", "missing",
             "directory"]


@pytest.mark.parametrize("seek", ["exact", "keyframe"])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_files_raise_one_typed_error_with_a_one_line_reason(bad_files, kind, seek):
    with pytest.raises(VideoDecodeError) as error:
        decode_video(str(bad_files[kind]), SamplingCfg(seek=seek), SIZE)
    reason = str(error.value)
    assert reason and "\n" not in reason and len(reason) <= 300
    assert "Traceback" not in reason and "video_reader.cc" not in reason


def test_bad_files_never_crash_the_process(bad_files):
    """decord can abort on broken input; the probe must stop every such file first."""
    code = (
        "import sys\nfrom encoders import SamplingCfg\nfrom encoders.video import decode_video, VideoDecodeError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n        decode_video(path, SamplingCfg(), 32)\n    except VideoDecodeError as e:\n"
        "        print('error:', e)\nprint('survived')\n"
    )
    paths = [str(bad_files[k]) for k in BAD_KINDS]
    result = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("error:") == len(paths) and "survived" in result.stdout


def test_oversized_frames_are_refused_before_decoding(good_videos, monkeypatch):
    monkeypatch.setattr(video_module, "MAX_PIXELS", 1000)
    with pytest.raises(VideoDecodeError, match="exceeds the 1000-pixel limit"):
        decode_video(str(good_videos["h264"]), SamplingCfg(), SIZE)


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        decode_video(str(path), SamplingCfg(), SIZE)


# --- Exact mode against the implementation it replaced -------------------------------------------

def todays_exact_sampling(path: str, sampling: SamplingCfg, size: int, segment_seconds=None, per_slot=1):
    """vidx's exact sampling before GOP-aware decoding, the straightforward way: every frame decoded
    in order by the decoder vidx used (decord; PyAV for what decord cannot open or turns wrongly:
    AV1, rotated), sampled at that decoder's timestamps. -> (duration, number of frames,
    [(indices, (n, 3, S, S) uint8)] per segment). Decoding in order, not from the keyframe before
    each frame as vidx did: on open GOPs that gave broken leading frames (9 grey levels off)."""
    with av.open(path) as container:
        rotation = int(next(container.decode(video=0)).rotation or 0)
    try:
        assert rotation % 360 == 0
        reader = decord.VideoReader(path, num_threads=1)
        times = np.asarray(reader.get_frame_timestamp(range(len(reader))), np.float64)
        starts, duration = times[:, 0], float(times[-1, 1])
        decoded = reader.get_batch(list(range(len(reader)))).asnumpy()
    except (AssertionError, RuntimeError, decord.DECORDError):
        with av.open(path) as container:
            frames = sorted(((f.pts, np.rot90(f.to_ndarray(format="rgb24"), k=rotation // 90))
                             for f in container.decode(video=0)), key=lambda item: item[0])
            time_base = float(container.streams.video[0].time_base)
        starts = np.array([(pts - frames[0][0]) * time_base for pts, _ in frames])
        duration = starts[-1] + (np.diff(starts).mean() if len(starts) > 1 else 0)
        decoded = np.stack([pixels for _, pixels in frames])
    segments = []
    for start, end in segment_bounds(duration, segment_seconds):
        indices = sample_frame_indices(starts, sampling, start, end, per_slot)
        segments.append((indices, resize_center_crop(decoded[indices], size)))
    return duration, len(starts), segments


EXACTNESS_CASES = [(spec, None, 1) for spec in GOOD_VIDEOS + [TEXTURED_GOP]] + [
    (TEXTURED_GOP, 0.5, 1), (TEXTURED_GOP, None, 3), (GOOD_VIDEOS[-1], 1.0, 1), (GOOD_VIDEOS[-1], None, 3)]


@pytest.mark.parametrize("spec, segment_seconds, per_slot", EXACTNESS_CASES,
                         ids=lambda v: getattr(v, "name", str(v)))
def test_exact_mode_gives_todays_frames(good_videos, textured_gop, spec, segment_seconds, per_slot):
    path = str(textured_gop if spec is TEXTURED_GOP else good_videos[spec.name])
    duration, num_frames, expected = todays_exact_sampling(path, SamplingCfg(), SIZE_EXACT, segment_seconds, per_slot)
    info, segments = decode_video(path, SamplingCfg(), SIZE_EXACT, segment_seconds, per_slot)
    # Durations: decord's last packet duration vs the PyAV path's mean frame step; now one rule.
    assert info.num_frames == num_frames and info.duration_s == pytest.approx(duration, abs=1e-3)
    assert len(segments) == len(expected)
    for segment, (indices, frames) in zip(segments, expected):
        np.testing.assert_array_equal(segment.frame_indices, indices)
        difference = (segment.frames.float() - frames.float()).abs().mean(dim=(1, 2, 3))
        assert difference.max() <= 1.0, difference  # grey levels: the two colour conversions


def spy_runs(monkeypatch) -> list:
    """Record the decode runs decode_video plans (first, last packet in decode order)."""
    planned = []

    def recording(table, wanted):
        planned.extend(runs := decode_runs(table, wanted))
        return runs
    monkeypatch.setattr(video_module, "decode_runs", recording)
    return planned


def test_segments_and_candidates_share_one_pass_with_no_packet_decoded_twice(textured_gop, monkeypatch):
    runs = spy_runs(monkeypatch)
    info, segments = decode_video(str(textured_gop), SamplingCfg(), SIZE, segment_seconds=0.5, per_slot=3)
    assert len(segments) == 5
    assert all(a[1] < b[0] for a, b in zip(runs, runs[1:]))  # ordered, disjoint: one forward pass
    assert sum(last - first + 1 for first, last in runs) < info.num_frames


# --- Keyframe mode ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", GOOD_VIDEOS, ids=lambda s: s.name)
def test_keyframe_mode_gives_the_nearest_keyframes_decoding_nothing_else(good_videos, spec, monkeypatch):
    path = str(good_videos[spec.name])
    exact_info, _ = decode_video(path, SamplingCfg(), SIZE)
    runs = spy_runs(monkeypatch)
    info, [segment] = decode_video(path, SamplingCfg(seek="keyframe"), SIZE)
    assert info == exact_info
    with av.open(path) as container:
        frames = sorted(container.decode(video=0), key=lambda f: f.pts)
        keyframes = [i for i, f in enumerate(frames) if f.key_frame]
        pixels = [np.rot90(f.to_ndarray(format="rgb24"), k=info.rotation // 90) for f in frames]
    assert set(segment.frame_indices.tolist()) <= set(keyframes)
    assert np.all(np.diff(segment.frame_indices) >= 0)  # in time order; slots may share a keyframe
    assert len(segment.frames) == len(segment.frame_indices) == len(segment.frame_times) >= 1
    assert len(runs) == len(set(segment.frame_indices.tolist()))  # each keyframe decoded once
    expected = resize_center_crop(np.stack([pixels[i] for i in segment.frame_indices]), SIZE)
    np.testing.assert_array_equal(segment.frames.numpy(), expected.numpy())
    assert all(first == last for first, last in runs)  # one packet per run: keyframes only


@pytest.mark.parametrize("name", ["long_gop", "vfr", "h264"])
def test_keyframe_mode_reads_only_keyframe_packets_where_the_container_indexes_every_frame(good_videos, name,
                                                                                          monkeypatch):
    """MP4 lists every frame in its index: the table comes from there and two packets per keyframe,
    so a long video costs keyframe mode no pass over its packets, and the row is the same."""
    path = str(good_videos[name])
    exact_info, _ = decode_video(path, SamplingCfg(), SIZE)
    read, packets = [], video_module._packets
    monkeypatch.setattr(video_module, "_packets", lambda c, s: (read.append(p) or p for p in packets(c, s)))
    info, [segment] = decode_video(path, SamplingCfg(seek="keyframe"), SIZE)
    with av.open(path) as container:
        keyframes = sum(entry.is_keyframe for entry in container.streams.video[0].index_entries)
    # The first packet, each keyframe and the packet after it (is the GOP closed?), the decoded ones.
    assert len(read) <= 1 + 2 * keyframes + len(set(segment.frame_indices.tolist())) < info.num_frames
    assert sum(not packet.is_keyframe for packet in read) <= keyframes
    assert info == exact_info


def test_keyframe_mode_shares_keyframes_across_segments(good_videos):
    _, segments = decode_video(str(good_videos["long_gop"]), SamplingCfg(seek="keyframe"), SIZE, segment_seconds=1.0)
    assert len(segments) == 5
    for segment in segments:  # the nearest keyframe to each slot, wherever it is
        assert set(segment.frame_indices.tolist()) <= {0, 32, 64, 96, 128}
        np.testing.assert_allclose(segment.frame_times, segment.frame_indices / 30.0)


def test_damaged_packets_cost_only_the_frames_they_hold(good_videos, tmp_path):
    """Garbled P/B-frame packets (keyframes intact): keyframe mode decodes as usual; exact mode,
    which samples a frame they hold, fails with a one-line reason instead of a traceback."""
    data = bytearray(good_videos["long_gop"].read_bytes())
    with av.open(str(good_videos["long_gop"])) as container:
        packets = [p for p in container.demux(video=0) if p.pts is not None]
    for packet in packets[40:60]:
        assert not packet.is_keyframe
        for i in range(packet.pos + 20, packet.pos + packet.size, 7):
            data[i] ^= 0xFF
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(data)
    _, [segment] = decode_video(str(damaged), SamplingCfg(seek="keyframe"), SIZE)
    assert set(segment.frame_indices.tolist()) == {0, 32, 64, 96, 128}
    with pytest.raises(VideoDecodeError, match=r"^frame \d+ did not decode$"):
        decode_video(str(damaged), SamplingCfg(), SIZE)


def test_making_an_av1_test_video_leaves_the_scheduling_policy_alone(tmp_path):
    """SVT-AV1 run as root puts its caller under SCHED_FIFO; every process the session starts after
    (Ray's workers, Milvus) would inherit it and starve the machine (tests/media.scheduling_kept)."""
    before = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    make_video(tmp_path, next(spec for spec in GOOD_VIDEOS if spec.codec == "libsvtav1"))
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before

"""Decode plans: every wanted frame reachable from a keyframe, no packet in two runs, no GOP nobody needs."""

from __future__ import annotations

import numpy as np

from encoders.frame_plan import FrameTable, decode_runs, gop_start


def closed_gops(frames: int, gop: int) -> FrameTable:
    """I P B B P B B ... in decode order, as x264 writes it: each P is shown after the B-frames
    decoded after it."""
    decode_pts = []
    for first in range(0, frames, gop):
        shown = list(range(first, min(first + gop, frames)))
        decode_pts.append(shown[0])
        rest = shown[1:]
        for i in range(0, len(rest), 3):  # P then its two B-frames
            group = rest[i:i + 3]
            decode_pts += [group[-1]] + group[:-1]
    keyframes = [pts % gop == 0 for pts in decode_pts]
    return FrameTable.from_packets(decode_pts, keyframes, 1 / 30, 1 / 30)


def test_frame_table_orders_frames_for_display_and_keeps_their_packets():
    table = closed_gops(10, 5)
    np.testing.assert_array_equal(table.pts, np.arange(10))
    assert [int(table.packet[i]) for i in range(4)] == [0, 2, 3, 1]  # I, then B B shown before the P
    assert table.keyframe.tolist() == [True] + [False] * 4 + [True] + [False] * 4
    assert table.duration == 10 / 30


def test_a_frame_decodes_from_its_gops_keyframe():
    table = closed_gops(30, 10)
    np.testing.assert_array_equal(gop_start(table), np.repeat([0, 10, 20], 10))


def test_open_gop_leading_frames_decode_from_the_keyframe_before():
    """Decode order I0 P3 B1 B2 | I6 B4 B5 P9 B7 B8: B4 and B5 come after I6 in the file but show
    before it, referencing P3, so their decode starts at I0."""
    decode_pts = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8]
    table = FrameTable.from_packets(decode_pts, [p in (0, 6) for p in decode_pts], 1 / 30, 1 / 30)
    np.testing.assert_array_equal(gop_start(table), [0, 0, 0, 0, 0, 0, 4, 4, 4, 4])


def test_runs_skip_gops_nobody_needs_and_stop_at_the_last_wanted_packet():
    table = closed_gops(100, 25)
    runs = decode_runs(table, np.array([3, 60]))
    assert runs == [(0, int(table.packet[3])), (50, int(table.packet[60]))]


def test_frames_in_one_gop_share_one_run_and_touching_runs_merge():
    table = closed_gops(100, 25)
    assert decode_runs(table, np.array([2, 20, 5])) == [(0, int(table.packet[20]))]
    last_of_first_gop = int(np.argmax(table.packet == 24))
    runs = decode_runs(table, np.array([last_of_first_gop, 26]))
    assert runs == [(0, int(table.packet[26]))]  # the second GOP's keyframe follows the first run


def test_runs_are_disjoint_and_cover_every_wanted_frame():
    table = closed_gops(300, 30)
    wanted = np.random.default_rng(0).choice(300, 40, replace=False)
    runs = decode_runs(table, wanted)
    assert all(a[1] < b[0] for a, b in zip(runs, runs[1:]))
    starts = gop_start(table)
    for frame in wanted:
        assert any(first <= starts[frame] and table.packet[frame] <= last for first, last in runs)


def test_no_wanted_frames_no_runs():
    assert decode_runs(closed_gops(10, 5), np.array([], int)) == []

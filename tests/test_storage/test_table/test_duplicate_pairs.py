"""Near-duplicates' arithmetic (storage/table/duplicate_pairs.py): the pairs of rows at least as
similar as a threshold, one exactly at it included and the float32 just below it not, the same
however the rows are split into blocks; the best pair of rows per pair of videos; groups as
connected components named by their smallest video_id."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from near_duplicates import as_set, block, brute_force, edge_vectors, unit_rows
from storage.table.duplicate_pairs import (RowPairs, best_video_pairs, connected_components, duplicate_groups,
                                           similar_rows)


def test_pairs_at_the_threshold_are_in_and_just_below_it_out():
    vectors = edge_vectors()
    found = as_set(similar_rows(block(vectors), block(vectors), 0.5))
    assert (0, 1) in found and (0, 2) not in found
    assert found == brute_force(vectors, np.arange(30), 0.5)


def test_blocks_give_the_pairs_of_one_product_and_skip_rows_of_one_video():
    vectors = np.concatenate([unit_rows(40, seed=1), unit_rows(40, seed=1)[:20]])  # rows 40-59 copy rows 0-19
    videos = np.arange(60) // 2  # two rows a video: rows 0 and 1 are one video's
    vectors[1] = vectors[0]
    expected = brute_force(vectors, videos, 0.3)
    assert (0, 1) not in expected and (0, 40) in expected
    halves = [block(vectors[:30], 0, videos[:30]), block(vectors[30:], 30, videos[30:])]
    found = RowPairs.concat([similar_rows(q, m, 0.3) for q in halves for m in halves])
    assert as_set(found) == expected
    assert np.all(found.score >= 0.3)


def test_the_best_pair_of_rows_stands_for_a_pair_of_videos_ties_to_the_smaller_segments():
    videos = np.array([0, 0, 0, 1, 1, 2])
    segments = np.array([0, 1, 2, 0, 1, 0])
    pairs = RowPairs(np.array([3, 1, 4, 2, 5, 0]), np.array([1, 3, 2, 4, 0, 5]),
                     np.array([0.9, 0.9, 0.95, 0.95, 0.7, 0.7]))
    best = best_video_pairs(pairs, videos, segments)
    # videos 0 and 1: rows (2, 4) score 0.95 twice (found both ways); 0 and 2: rows (0, 5)
    assert list(zip(best.first.tolist(), best.second.tolist(), best.score.tolist())) == [(2, 4, 0.95), (0, 5, 0.7)]
    tied = best_video_pairs(RowPairs(np.array([2, 0]), np.array([4, 3]), np.array([0.8, 0.8])), videos, segments)
    assert (tied.first.tolist(), tied.second.tolist()) == ([0], [3])  # segments (0, 0) before (2, 1)


def test_components_are_named_by_their_smallest_member():
    first, second = np.array([5, 3, 1, 6]), np.array([3, 1, 7, 2])  # 1-3-5-7, 2-6; 0 and 4 alone
    assert connected_components(first, second, 8).tolist() == [0, 1, 2, 1, 4, 1, 2, 1]
    chain = np.arange(999)  # a path: every node hooked in turn
    assert set(connected_components(chain[::-1] + 1, chain[::-1], 1000).tolist()) == {0}


def test_groups_are_named_by_their_smallest_video_id_in_string_order():
    pairs = pa.table({"video_id": ["v10", "v2", "a"], "duplicate_id": ["v9", "v9", "b"]})
    groups = duplicate_groups(pairs)
    assert groups.to_pylist() == [{"video_id": v, "duplicate_group": g} for v, g in
                                  [("a", "a"), ("b", "a"), ("v10", "v10"), ("v2", "v10"), ("v9", "v10")]]

"""Near-duplicates' engine (storage/table/duplicates.py, duplicate_index.py, duplicate_plan.py): row
pairs at least as similar as a threshold, exactly at it included, by a product or a partition; the
best pair of rows per pair of videos; groups as connected components named by their smallest
video_id; and the plan of an incremental run. Numpy and real Parquet under tmp_path, no Ray."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.schema import DUPLICATING_KEY
from storage.table.duplicate_index import cell_index, cells_for, probed, probed_rows, train_cells
from storage.table.duplicate_plan import plan_duplicates, read_groups, write_compared, write_groups
from storage.table.duplicates import (Block, RowPairs, best_video_pairs, connected_components, duplicate_groups,
                                      similar_rows)

DIM = 64
SETTINGS = {"threshold": 0.5, "method": "exact", "model": "m"}


def unit_rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def block(vectors: np.ndarray, first: int = 0, videos: np.ndarray | None = None) -> Block:
    rows = np.arange(first, first + len(vectors))
    return Block(vectors, rows, rows if videos is None else videos, np.zeros(len(vectors), np.int64))


def brute_force(vectors: np.ndarray, videos: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Every pair of rows (i < j) of distinct videos whose float64 product is at least `threshold`."""
    scores = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    return {(i, j) for i, j in zip(*np.nonzero(scores >= threshold)) if i < j and videos[i] != videos[j]}


def as_set(pairs: RowPairs) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in zip(pairs.first.tolist(), pairs.second.tolist())}


def edge_vectors() -> np.ndarray:
    """Rows 0-2: row 1 scores exactly 0.5 with row 0, row 2 the float32 just below (0.49999997)."""
    vectors = unit_rows(30, seed=3)
    vectors[:3] = 0
    vectors[0, 0] = 1
    vectors[1, :2] = [0.5, np.sqrt(0.75)]
    vectors[2, :2] = [np.nextafter(np.float32(0.5), np.float32(0)), np.sqrt(0.75)]
    return vectors


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


def test_a_partition_probing_every_cell_finds_what_the_product_finds_and_nothing_below():
    vectors = np.concatenate([unit_rows(300, seed=5), edge_vectors()])
    near = vectors[:50] + 0.2 * unit_rows(50, seed=6)
    vectors = np.concatenate([vectors, near / np.linalg.norm(near, axis=1, keepdims=True)])
    cells = cells_for(len(vectors))
    assert cells > 1
    centroids = train_cells(vectors, cells)
    library = block(vectors)
    every = probed_rows(probed(centroids, library, cells), library, cell_index(centroids, vectors), 0.5)
    assert as_set(every) == brute_force(vectors, np.arange(len(vectors)), 0.5)
    few = probed_rows(probed(centroids, library, 1), library, cell_index(centroids, vectors), 0.5)
    assert as_set(few) <= as_set(every) and np.all(few.score >= 0.5)


def videos(*rows: tuple[str, str]) -> pa.Table:
    return pa.table({"video_id": [v for v, _ in rows], "run_id": [r for _, r in rows]})


def stored_pairs(*pairs: tuple[str, str]) -> pa.Table:
    return pa.table({"pair_key": [f"{a}#{b}" for a, b in pairs], "video_id": [a for a, _ in pairs],
                     "duplicate_id": [b for _, b in pairs], "run_id": ["d1"] * len(pairs)})


def compared(tmp_path, rows: pa.Table, settings: dict = SETTINGS) -> pa.Table:
    write_compared(str(tmp_path), rows, settings)
    return pq.read_table(tmp_path / "duplicates" / "compared.parquet")


LIBRARY = videos(("a", "r1"), ("a", "r1"), ("b", "r1"), ("c", "r1"))  # video a in two segments
STORED = stored_pairs(("a", "b"), ("b", "c"))


def test_a_run_with_nothing_stored_or_other_settings_compares_every_video(tmp_path):
    plan = plan_duplicates(LIBRARY, None, SETTINGS, STORED.slice(0, 0))
    assert plan.full and sorted(plan.compared.to_pylist()) == ["a", "b", "c"] and plan.kept.num_rows == 0
    record = compared(tmp_path, LIBRARY, {**SETTINGS, "threshold": 0.6})
    assert json.loads(record.schema.metadata[DUPLICATING_KEY.encode()])["threshold"] == 0.6
    assert plan_duplicates(LIBRARY, record, SETTINGS, STORED).full


def test_nothing_changed_compares_nothing_and_keeps_every_pair(tmp_path):
    plan = plan_duplicates(LIBRARY, compared(tmp_path, LIBRARY), SETTINGS, STORED)
    assert not plan.changes and len(plan.compared) == 0 and plan.kept.equals(STORED)


def test_new_and_re_encoded_videos_are_compared_and_pairs_of_gone_videos_dropped(tmp_path):
    record = compared(tmp_path, LIBRARY)
    now = videos(("a", "r1"), ("a", "r1"), ("b", "r2"), ("d", "r2"))  # b re-encoded, c removed, d new
    plan = plan_duplicates(now, record, SETTINGS, STORED)
    assert plan.changes and not plan.full
    assert sorted(plan.compared.to_pylist()) == ["b", "d"] and plan.removed.to_pylist() == ["c"]
    assert plan.kept.num_rows == 0  # (a, b): b re-encoded; (b, c): both
    only_new = plan_duplicates(videos(*[(v, "r1") for v in "aabc"], ("e", "r3")), record, SETTINGS, STORED)
    assert only_new.compared.to_pylist() == ["e"] and only_new.kept.equals(STORED)


def test_groups_are_written_only_when_they_change(tmp_path):
    groups = duplicate_groups(pa.table({"video_id": ["a"], "duplicate_id": ["b"]}))
    assert write_groups(str(tmp_path), groups)
    assert not write_groups(str(tmp_path), groups)
    assert read_groups(str(tmp_path)).to_pylist() == groups.to_pylist()
    assert write_groups(str(tmp_path), duplicate_groups(pa.table({"video_id": ["a"], "duplicate_id": ["c"]})))


@pytest.mark.parametrize("rows", [0, 1, 127, 128, 10_000])
def test_cells_grow_as_the_root_of_the_rows_with_enough_rows_to_train_each(rows):
    cells = cells_for(rows)
    assert cells >= 1 and (cells == 1 or rows >= 64 * cells)

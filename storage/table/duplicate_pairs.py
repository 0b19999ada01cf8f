"""Near-duplicates' arithmetic: the pairs of rows of two blocks at least as similar as a threshold,
the best pair of rows of each pair of videos, and the groups those pairs join videos into.

The score is the paper's: the inner product of two unit vectors. Blocks are multiplied in float32
(BLAS), which rounds a product of unit vectors of D dimensions by at most D·2⁻²⁴ (Higham's γ_D);
every row pair within twice that of the threshold is scored again in float64, and that score
decides. So the pairs are the float64 products of the stored vectors, the same however the rows
are split into blocks or found (a product or an index), and a pair exactly at the threshold is in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.schema import GROUP_FIELDS


@dataclass
class Block:
    """Rows of the library, as a comparison task takes them."""

    vectors: np.ndarray  # (n, D) float32, unit rows
    rows: np.ndarray  # (n,) int64: each row's number in the library
    videos: np.ndarray  # (n,) int64: each row's video, numbered in video_id order
    segments: np.ndarray  # (n,) int64: each row's segment (0 for whole videos)


@dataclass
class RowPairs:
    """Pairs of library rows of distinct videos with their float64 scores."""

    first: np.ndarray  # int64 row numbers
    second: np.ndarray
    score: np.ndarray  # float64

    @classmethod
    def concat(cls, many: list[RowPairs]) -> RowPairs:
        if not many:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        return cls(*(np.concatenate([getattr(p, name) for p in many]) for name in ("first", "second", "score")))

    def __len__(self) -> int:
        return len(self.score)


def candidate_floor(threshold: float, dim: int) -> float:
    """The float32 product below which no row pair can score `threshold` in float64."""
    return threshold - dim * 2.0 ** -23


def exact_scores(queries: np.ndarray, library: np.ndarray, query: np.ndarray, match: np.ndarray) -> np.ndarray:
    """The float64 inner products of rows `query` of `queries` with rows `match` of `library`."""
    return np.einsum("ij,ij->i", queries[query].astype(np.float64), library[match].astype(np.float64))


def rescored(queries: Block, library: Block, query: np.ndarray, match: np.ndarray, threshold: float) -> RowPairs:
    """Of candidate pairs of rows (`query` of `queries`, `match` of `library`), those of distinct
    videos scoring at least `threshold` in float64."""
    other = queries.videos[query] != library.videos[match]
    query, match = query[other], match[other]
    score = exact_scores(queries.vectors, library.vectors, query, match)
    kept = score >= threshold
    return RowPairs(queries.rows[query[kept]], library.rows[match[kept]], score[kept])


def similar_rows(queries: Block, library: Block, threshold: float) -> RowPairs:
    """Every pair of a row of `queries` and a row of `library`, of distinct videos, scoring at least
    `threshold`: one matrix product."""
    scores = queries.vectors @ library.vectors.T  # (n, m) float32
    query, match = np.nonzero(scores >= candidate_floor(threshold, queries.vectors.shape[1]))
    return rescored(queries, library, query, match, threshold)


def best_video_pairs(pairs: RowPairs, videos: np.ndarray, segments: np.ndarray) -> RowPairs:
    """Of row pairs (`videos` and `segments`: by row number), the best of each pair of videos, the
    row of the smaller video first, ordered by the two videos. Ties go to the smaller segments, so
    any split of the rows into blocks gives the same rows."""
    swap = videos[pairs.first] > videos[pairs.second]
    first, second = np.where(swap, pairs.second, pairs.first), np.where(swap, pairs.first, pairs.second)
    order = np.lexsort((segments[second], segments[first], -pairs.score, videos[second], videos[first]))
    first, second, score = first[order], second[order], pairs.score[order]
    a, b = videos[first], videos[second]
    best = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])] if len(a) else np.zeros(0, bool)
    return RowPairs(first[best], second[best], score[best])


def connected_components(first: np.ndarray, second: np.ndarray, nodes: int) -> np.ndarray:
    """Each of `nodes` nodes' component in the graph of edges first[i]–second[i], named by its
    smallest node. Each round hooks the larger name of every edge under the smaller one, then
    follows the hooks to their ends, until both ends of every edge carry one name."""
    name = np.arange(nodes)
    while True:
        low, high = np.minimum(name[first], name[second]), np.maximum(name[first], name[second])
        if np.array_equal(low, high):
            return name
        np.minimum.at(name, high, low)
        while not np.array_equal(name[name], name):
            name = name[name]


def duplicate_groups(pairs: pa.Table) -> pa.Table:
    """Each video of the pair rows `pairs` (video_id, duplicate_id) and its group, named by the
    group's smallest video_id; by video_id."""
    video_id, duplicate_id = (pairs[c].combine_chunks().cast(pa.string()) for c in ("video_id", "duplicate_id"))
    videos = pc.unique(pa.concat_arrays([video_id, duplicate_id]))
    videos = videos.take(pc.sort_indices(videos))
    first = pc.index_in(video_id, value_set=videos).to_numpy()
    second = pc.index_in(duplicate_id, value_set=videos).to_numpy()
    group = connected_components(first, second, len(videos))
    return pa.table([videos, videos.take(pa.array(group))], schema=pa.schema(GROUP_FIELDS))

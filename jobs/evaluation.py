"""R@1/5/10, median and mean rank of an index run against its captions, both directions, as the paper reports them.

The numbers are those of the CLIP2Video evaluation code (github.com/CryhanFang/CLIP2Video,
evaluation/metrics.py and evaluation/eval.py:logging_rank): R@1, R@5, R@10 in percent, the median
(MdR) and mean (MnR) of the 1-based rank of the ground truth. The paper computes them two ways,
and so does vidx, choosing the path by the data as the paper's data loaders do:

- One caption per video (its MSR-VTT path): `compute_metrics` on the square caption x video
  matrix for text->video, and on its transpose for video->text.
- Several captions per video (its MSVD and VATEX path):
  - text->video, `tensor_text_to_video_metrics`: each caption ranks every video; its rank is the
    position of its own video in a descending sort of the row, one rank per caption, and MdR is
    torch.median's: the lower of the two middle ranks for an even count.
  - video->text, `compute_metrics` on `tensor_video_to_text_sim`: each video ranks the videos'
    caption groups, a group scoring its best caption against the query video (the paper's max over
    a -inf padded caption axis). A video without captions is no query (its ground truth is -inf,
    which the paper's code drops) and never outranks anything.
- Ties. `compute_metrics` counts a ground truth tied with t-1 other candidates t times, at ranks r,
  r+1, ..., r+t-1 with r = 1 + (candidates scoring strictly higher), and every rate and average
  (numpy's median: the mean of the two middle entries) is taken over these entries. The
  multi-caption text->video sort leaves the order of tied videos to torch's argsort, which keeps
  column order for short rows on a CPU and is arbitrary beyond; vidx keeps column order (videos
  sorted by video_id) always, as a stable sort does.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from errors import UserError
from storage.options import Options, cli
from storage.schema import CAPTION_KEY, CAPTIONS, EMBEDDING, VIDEO_KEY, VIDEOS
from storage.table.dataset import read_live


RECALL_AT = (1, 5, 10)
QUERY_CHUNK = 4096  # rows compared at once: bounds the boolean temporaries of a large matrix


def _truth_chunks(sim: np.ndarray, truth) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rows, their ground-truth scores, ground-truth columns; both (n, 1)) by QUERY_CHUNK rows.
    Rows whose ground-truth score is not finite (-inf padding, nan) are left out, as in the paper."""
    sim = np.asarray(sim)
    truth = np.asarray(truth, dtype=np.int64)
    if sim.ndim != 2 or truth.shape != (sim.shape[0],):
        raise ValueError(f"need a (queries, candidates) matrix and one ground-truth column per row, "
                         f"got {sim.shape} and {truth.shape}")
    for start in range(0, sim.shape[0], QUERY_CHUNK):
        rows, columns = sim[start:start + QUERY_CHUNK], truth[start:start + QUERY_CHUNK]
        score = rows[np.arange(rows.shape[0]), columns]
        keep = np.isfinite(score)
        yield rows[keep], score[keep][:, None], columns[keep][:, None]


def ground_truth_ranks(sim: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based ranks of column truth[q] in row q of sim, one entry per tied position (compute_metrics)."""
    higher, tied = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for rows, score, _ in _truth_chunks(sim, truth):
        higher.append(np.count_nonzero(rows > score, axis=1))
        tied.append(np.count_nonzero(rows == score, axis=1))
    higher, tied = np.concatenate(higher), np.concatenate(tied)
    position_in_tie = np.arange(tied.sum()) - np.repeat(np.cumsum(tied) - tied, tied)
    return np.repeat(higher, tied) + position_in_tie + 1


def sorted_position_ranks(sim: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based position of column truth[q] in row q sorted by descending score, ties in column order
    (a stable sort): one rank per row (tensor_text_to_video_metrics)."""
    ranks = [np.zeros(0, np.int64)]
    for rows, score, columns in _truth_chunks(sim, truth):
        tied_before = (rows == score) & (np.arange(rows.shape[1])[None, :] < columns)
        ranks.append(np.count_nonzero(rows > score, axis=1) + np.count_nonzero(tied_before, axis=1) + 1)
    return np.concatenate(ranks)


def metrics_from_ranks(ranks: np.ndarray, lower_median: bool = False) -> dict[str, float]:
    """R@K in percent, MdR, MnR. MdR is numpy's median (the mean of the two middle ranks for an even
    count), or with `lower_median` torch's (the lower of the two)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no query with a ground truth to rank")
    metrics = {f"R@{k}": float(100.0 * np.count_nonzero(ranks <= k) / ranks.size) for k in RECALL_AT}
    metrics["MdR"] = float(np.sort(ranks)[(ranks.size - 1) // 2] if lower_median else np.median(ranks))
    metrics["MnR"] = float(np.mean(ranks))
    return metrics


def _caption_videos(sim: np.ndarray, caption_video) -> np.ndarray:
    """Each caption's video column; None means the square one-caption-per-video matrix."""
    if caption_video is None:
        if sim.shape[0] != sim.shape[1]:
            raise ValueError(f"a {sim.shape} matrix needs caption_video (the video of each caption)")
        return np.arange(sim.shape[0])
    caption_video = np.asarray(caption_video, dtype=np.int64)
    if caption_video.shape != (sim.shape[0],) or caption_video.min(initial=0) < 0 \
            or caption_video.max(initial=0) >= sim.shape[1]:
        raise ValueError(f"caption_video must give a video column in [0, {sim.shape[1]}) for each of the "
                         f"{sim.shape[0]} captions")
    return caption_video


def text_to_video_metrics(sim: np.ndarray, caption_video=None) -> dict[str, float]:
    """Metrics of sim (captions x videos). caption_video None: the square one-caption-per-video
    matrix, caption q of video q (the paper's compute_metrics); else caption q's video is column
    caption_video[q] (its multi-caption path: sorted positions, torch's median)."""
    sim = np.asarray(sim)
    if caption_video is None:
        return metrics_from_ranks(ground_truth_ranks(sim, _caption_videos(sim, None)))
    return metrics_from_ranks(sorted_position_ranks(sim, _caption_videos(sim, caption_video)), lower_median=True)


def best_caption_scores(sim: np.ndarray, caption_video=None) -> np.ndarray:
    """(videos x videos): [k, i] = the best score of video i's captions against video k, -inf when
    video i has none (the paper's max over its -inf padded caption axis)."""
    sim = np.asarray(sim)
    caption_video = _caption_videos(sim, caption_video)
    order = np.argsort(caption_video, kind="stable")
    videos, starts = np.unique(caption_video[order], return_index=True)
    best = np.full((sim.shape[1], sim.shape[1]), -np.inf, dtype=np.result_type(sim.dtype, np.float32))
    if videos.size:
        best[videos] = np.maximum.reduceat(sim[order], starts, axis=0)
    return best.T


def video_to_text_metrics(sim: np.ndarray, caption_video=None) -> dict[str, float]:
    """Metrics of each captioned video retrieving its own caption group (see the module docstring)."""
    best = best_caption_scores(sim, caption_video)
    return metrics_from_ranks(ground_truth_ranks(best, np.arange(best.shape[0])))


def embedding_matrix(table: pa.Table) -> np.ndarray:
    return np.stack(table[EMBEDDING].to_numpy(zero_copy_only=False)).astype(np.float32, copy=False)


def _read(directory: str, key_column: str, columns: list[str]) -> pa.Table:
    table = read_live(directory, key_column=key_column, columns=columns)
    if table is None or table.num_rows == 0:
        raise UserError(f"{directory} holds no embeddings: is this the --output of `python -m jobs index`?")
    return table


def evaluate(embeddings: str) -> dict:
    """Metrics of an index output directory (DIR/videos, DIR/captions) against its own captions."""
    root = embeddings.rstrip("/")
    videos = _read(f"{root}/{VIDEOS}", VIDEO_KEY, [VIDEO_KEY, "video_id", "status", "run_id", EMBEDDING])
    captions = _read(f"{root}/{CAPTIONS}", CAPTION_KEY, [CAPTION_KEY, "video_id", "run_id", EMBEDDING])
    videos = videos.filter(pc.equal(videos["status"], "ok")).sort_by("video_id")
    video_ids = videos["video_id"].to_pylist()
    if not video_ids:
        raise UserError(f"{root}/{VIDEOS} holds no video with status ok")
    repeated = next((a for a, b in zip(video_ids, video_ids[1:]) if a == b), None)
    if repeated is not None:
        raise UserError(f"video {repeated!r} has several segment rows; eval needs one row per video: "
                         "index without --segment-seconds")
    column_of = {video_id: i for i, video_id in enumerate(video_ids)}
    indexed = captions.filter(pc.is_in(captions["video_id"], pa.array(video_ids, pa.string())))
    if indexed.num_rows == 0:
        raise UserError(f"none of the {captions.num_rows} captions belongs to a video indexed with status ok")
    indexed = indexed.sort_by([("video_id", "ascending"), (CAPTION_KEY, "ascending")])
    caption_vectors, video_vectors = embedding_matrix(indexed), embedding_matrix(videos)
    if caption_vectors.shape[1] != video_vectors.shape[1]:
        raise UserError(f"captions have D={caption_vectors.shape[1]} but videos D={video_vectors.shape[1]}: "
                         "not one model's embeddings")
    # The stored vectors carry the model's branch weighting; the logit scale would not change a rank.
    sim = caption_vectors @ video_vectors.T
    caption_video = np.array([column_of[v] for v in indexed["video_id"].to_pylist()])
    one_each = len(caption_video) == len(video_ids) and len(set(caption_video.tolist())) == len(video_ids)
    if one_each:  # the square path: caption rows in video order, so caption q belongs to video q
        sim, caption_video = sim[np.argsort(caption_video)], None
    return {
        "path": "one caption per video" if one_each else "several captions per video",
        "t2v": text_to_video_metrics(sim, caption_video),
        "v2t": video_to_text_metrics(sim, caption_video),
        "n_videos": len(video_ids),
        "n_captions": indexed.num_rows,
        "n_captions_skipped": captions.num_rows - indexed.num_rows,
        "n_videos_without_captions": len(video_ids) - len(set(indexed["video_id"].to_pylist())),
    }


class Arguments(Options):
    embeddings: str = Field(..., description="an index --output directory (whole videos, with captions)")
    as_json: bool = Field(False, description="print one JSON object", json_schema_extra=cli(flag="--json"))


def metrics_lines(result: dict) -> str:
    lines = [f"{result['n_videos']} videos, {result['n_captions']} captions ({result['path']}, as the paper computes it)"]
    for direction in ("t2v", "v2t"):
        lines.append(f"{direction}  " + "  ".join(f"{name} {value:.1f}" for name, value in result[direction].items()))
    return "\n".join(lines)


def run(arguments: Arguments) -> dict | str:
    result = evaluate(arguments.embeddings)
    return result if arguments.as_json else metrics_lines(result)

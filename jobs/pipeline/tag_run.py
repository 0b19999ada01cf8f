"""The tag run: every video's (or segment's) k best texts of a corpus, as Parquet rows beside the index.

CLIP's zero-shot classification applied to video: one matrix product per block of videos, in Ray
tasks, against the corpus' vectors (no vector database round trip per video). Rows go to
OUTPUT/tags/NAME (video_id, segment, text_id, text, score, rank); `vidx load` serves them as the
videos' list column NAME. Without --per-segment a video's score for a text is its best segment's.

Incremental (storage/table/tag_plan.py): new and re-encoded videos are scored against every text;
when texts are only added, the other videos are scored against the new texts alone and merged with
their stored tags (a text beyond a video's top k stays beyond it); a video whose tags held a text
since removed or re-encoded is scored again whole; other settings rescore everything.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from errors import UserError, one_line
from storage.progress import Progress
from storage.schema import EMBEDDING, TAG_KEY, TAGS, VIDEO_KEY, tag_schema
from storage.table.compaction import compact
from storage.table.corpus import check_same_model
from storage.table.dataset import list_tables, remove_temp_files, write_part
from storage.table.live_rows import LiveRows
from storage.table.runs import new_run_id, write_run_record
from storage.table.tag_columns import check_tag_column
from storage.table.tag_plan import (Corpus, TagPlan, plan_tags, read_corpus_vectors, read_stored_tags, read_video_rows,
                                    rows_of_videos, stored_settings, write_scored_texts)
from storage.table.tag_scores import CANDIDATES, chosen_rows, scored_block, tag_rows

from .cluster import connect
from .options import TagOptions

logger = logging.getLogger(__name__)

# Video rows per Ray task: at 1024-d against thousands of texts, a product of tens of GFLOPs and a
# score matrix of tens of MB (docs/benchmarks.md, "Zero-shot tagging").
VIDEOS_PER_TASK = 4096
# Rows per Parquet part of tags (no vectors: ~100 bytes a row).
TAG_ROWS_PER_PART = 65_536

score_block = ray.remote(scored_block)


def score_videos(live: LiveRows, texts: np.ndarray, k: int, what: str) -> list[pa.Table]:
    """The k best texts of every row of `live`: a Ray task per block, as many in flight as the
    cluster has CPUs. The driver holds a block per task in flight, and the (small) results."""
    texts_ref, window = ray.put(texts), max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending, results = [], []
    progress = Progress(logger, f"tag ({what}): sent", live.rows.num_rows, "video rows")
    for block in live.batches([VIDEO_KEY, "video_id", "segment", "run_id", EMBEDDING], VIDEOS_PER_TASK):
        pending.append(score_block.remote(block, texts_ref, k))
        while len(pending) >= window:
            ready, pending = ray.wait(pending, num_returns=1)
            results.append(ray.get(ready[0]))
        progress.advance(block.num_rows)
    return results + ray.get(pending)


def candidates_of(plan: TagPlan, live: LiveRows, videos: pa.Table, corpus: Corpus, k: int,
                  address: str | None) -> list[pa.Table]:
    """The plan's videos scored on Ray (the full ones against every text, the merged ones against the
    added texts), with the merged videos' stored tags."""
    candidates = []
    for ids, texts, what in ((plan.full, np.arange(corpus.texts.num_rows), "all texts"),
                             (plan.merged, plan.added, "added texts")):
        if len(ids) and len(texts):
            connect(address)
            chosen = rows_of_videos(live, videos, ids)
            for scored in score_videos(chosen, corpus.matrix[texts], k, what):
                candidates.append(scored.set_column(3, "_text", pa.array(texts).take(scored["_text"])))
    if plan.stored is not None:
        candidates.append(plan.stored.cast(CANDIDATES))
    return candidates


def run_tags(embeddings: str, texts: str, options: TagOptions) -> dict:
    """Tag every video of the index at EMBEDDINGS with its `top_k` best texts of corpus `texts` (a
    name under EMBEDDINGS/texts, or a corpus directory); returns the run's stats."""
    started, root, run_id = time.perf_counter(), embeddings.rstrip("/"), new_run_id()
    live, videos = read_video_rows(root)
    corpus = read_corpus_vectors(root, texts)
    check_same_model(f"corpus {corpus.name!r}", corpus.model["fingerprint"], live.model())
    check_tag_column(corpus.name, live.schema.names)
    directory = f"{root}/{TAGS}/{corpus.name}"
    remove_temp_files(directory)
    settings = {"top_k": options.top_k, "min_score": options.min_score, "per_segment": options.per_segment,
                "model": corpus.model["fingerprint"]}
    plan = plan_tags(videos, corpus.texts, read_stored_tags(directory, settings))
    plan_s = time.perf_counter() - started
    candidates = candidates_of(plan, live, videos, corpus, options.top_k, options.address)
    score_s, written = time.perf_counter() - started - plan_s, pa.array([], pa.string())
    if candidates:
        chosen = chosen_rows(pa.concat_tables(candidates), options.top_k, options.min_score, options.per_segment)
        rows = tag_rows(chosen, corpus.texts, corpus.model["fingerprint"], run_id, tag_schema(corpus.model))
        for start in range(0, rows.num_rows, TAG_ROWS_PER_PART):
            write_part(rows.slice(start, TAG_ROWS_PER_PART), directory, TAG_KEY)
        written = rows["video_id"].combine_chunks()
    # A video rescored to no tag (--min-score) keeps none of its old ones.
    rescored = pa.concat_arrays([plan.full, plan.merged])
    untagged = rescored.filter(pc.invert(pc.is_in(rescored, value_set=written)))
    ids = pc.unique(videos["video_id"])
    compaction, _ = compact(directory, ids.filter(pc.invert(pc.is_in(ids, value_set=untagged))), TAG_KEY)
    if plan.texts_changed:
        write_scored_texts(directory, corpus.texts, settings)
    scored = len(plan.full) + len(plan.merged)
    stats = {"corpus": corpus.name, "videos": len(ids), "texts": corpus.texts.num_rows,
             "videos_scored": len(plan.full), "videos_merged": len(plan.merged), "texts_added": len(plan.added),
             "texts_removed": plan.removed, "rows_written": len(written), "rows_dropped": compaction["rows_dropped"],
             "plan_s": round(plan_s, 3), "score_s": round(score_s, 3),
             "total_s": round(time.perf_counter() - started, 3),
             "videos_per_s": round(scored / score_s, 1) if scored else 0.0}
    record = {"run_id": run_id, "command": "tag", "stats": stats, "compaction": compaction, "settings": settings,
              "config": {"embeddings": embeddings, "texts": texts, **options.model_dump()}}
    stats["stats_file"] = write_run_record(root, run_id, record)
    return stats


def retag(embeddings: str, address: str | None = None) -> dict:
    """Bring every corpus tagged under EMBEDDINGS up to date with the videos, with the settings it
    was last tagged with (the nightly's step after indexing: only new and re-encoded videos are
    scored). Returns each corpus' stats, or the one-line reason it could not be tagged."""
    root, done = embeddings.rstrip("/"), {}
    for name in list_tables(f"{root}/{TAGS}"):
        settings = stored_settings(f"{root}/{TAGS}/{name}")
        if settings is None:
            continue
        options = TagOptions(top_k=settings["top_k"], min_score=settings["min_score"],
                             per_segment=settings["per_segment"], address=address)
        try:
            done[name] = run_tags(root, name, options)
        except UserError as e:  # a corpus of another model: the load refuses it in the same words
            logger.warning("tags of %s not brought up to date: %s", name, one_line(e))
            done[name] = {"error": one_line(e)}
    return done

"""The tag job: every video's (or segment's) k best texts of a corpus, as Parquet rows beside the index.

Usage: python -m jobs tag --embeddings DIR --texts NAME_OR_DIR [--top-k 5] [--min-score S] [--per-segment]
           [--address ADDR]
CLIP's zero-shot classification applied to video: one matrix product per block of videos, in Ray
tasks, against the corpus' vectors (no vector database round trip per video). Rows go to
OUTPUT/tags/NAME (video_id, segment, text_id, text, score, rank); `vidx load` serves them as the
videos' list column NAME. Without --per-segment a video's score for a text is its best segment's.

Incremental (jobs/tag_plan.py): new and re-encoded videos are scored against every text; when
texts are only added, the other videos are scored against the new texts alone and merged with
their stored tags (a text beyond a video's top k stays beyond it); a video whose tags held a text
since removed or re-encoded is scored again whole; other settings rescore everything.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from errors import UserError, one_line
from storage.table.compaction import compact
from storage.table.corpus import check_same_model
from storage.table.dataset import list_tables, read_tagged_rows, remove_temp_files, write_part
from storage.table.live_rows import LiveRows, live_table, rows_of
from storage.table.runs import new_run_id, write_run_record
from storage.schema import (EMBEDDING, KEY_SEPARATOR, SCORE, TAG_KEY, TAGS, TEXT_KEY, TEXTS, VIDEO_KEY, VIDEOS,
                            check_corpus_name, tag_schema)
from storage.table.tag_columns import check_tag_column
from storage.milvus.store import MAX_ARRAY

from .cluster import connect
from storage.table.tag_plan import TagPlan, plan_tags, read_stored_tags, stored_settings, write_scored_texts
from storage.table.tag_scores import best_texts, top_per_group

logger = logging.getLogger(__name__)

# Video rows per Ray task: 4,096 x 1024-d against 5,000 texts is a 43-GFLOP product, 82 MB of scores.
VIDEOS_PER_TASK = 4096
# Rows per Parquet part of tags (no vectors: ~100 bytes a row).
TAG_ROWS_PER_PART = 65_536
PROGRESS_SECONDS = 10
# A video row's candidate texts, as the Ray tasks return them (_text: the corpus row).
CANDIDATES = pa.schema([("video_id", pa.string()), ("segment", pa.int32()), ("video_run_id", pa.string()),
                        ("_text", pa.int64()), (SCORE, pa.float64())])


@dataclass
class Corpus:
    name: str
    texts: pa.Table  # text_id, text, run_id: sorted by text_id (ties go to the first)
    matrix: np.ndarray  # (T, D) float32, in that order
    model: dict


def read_corpus_vectors(root: str, texts: str) -> Corpus:
    """A corpus by NAME (OUTPUT/texts/NAME) or directory, with its vectors: its parts read once."""
    directory = texts.rstrip("/") if "/" in texts else f"{root}/{TEXTS}/{texts}"
    name = check_corpus_name(directory.rsplit("/", 1)[-1])
    tagged = read_tagged_rows(directory, [TEXT_KEY, "text", "run_id", EMBEDDING])
    rows = live_table(tagged, TEXT_KEY, None) if tagged is not None else None
    if rows is None or rows.num_rows == 0:
        raise UserError(f"{directory}: no texts; encode a corpus first (vidx texts --input FILE --output {root})")
    model = rows_of(tagged, rows, directory, TEXT_KEY).model()
    rows = rows.sort_by(TEXT_KEY)
    matrix = np.stack(rows[EMBEDDING].to_numpy(zero_copy_only=False)).astype(np.float32)
    return Corpus(name, rows.select([TEXT_KEY, "text", "run_id"]), matrix, model)


def video_rows(root: str) -> tuple[LiveRows, pa.Table]:
    """The live 'ok' video rows: to read their vectors, and their key, video_id and run_id."""
    directory = f"{root}/{VIDEOS}"
    tagged = read_tagged_rows(directory, [VIDEO_KEY, "video_id", "run_id", "status"])
    if tagged is None:
        raise UserError(f"{root}: no video rows to tag; run vidx index first")
    rows = live_table(tagged, VIDEO_KEY, "ok")
    if rows.num_rows == 0:
        raise UserError(f"{root}: no 'ok' video rows to tag")
    return rows_of(tagged, rows, directory, VIDEO_KEY), rows


@ray.remote
def score_block(block: pa.Table, texts: np.ndarray, k: int) -> pa.Table:
    """A block of video rows' k best texts (CANDIDATES)."""
    vectors = np.stack(block[EMBEDDING].to_numpy(zero_copy_only=False)).astype(np.float32)
    video, text, score = best_texts(vectors, texts, k)
    taken = block.select(["video_id", "segment", "run_id"]).take(pa.array(video))
    return pa.table([taken["video_id"], taken["segment"], taken["run_id"], pa.array(text, pa.int64()),
                     pa.array(score.astype(np.float64))], schema=CANDIDATES)


def score_videos(live: LiveRows, texts: np.ndarray, k: int, what: str) -> list[pa.Table]:
    """The k best texts of every row of `live`: a Ray task per block, as many in flight as the
    cluster has CPUs. The driver holds a block per task in flight, and the (small) results."""
    texts_ref, window = ray.put(texts), max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending, results, sent, total = [], [], 0, live.rows.num_rows
    started = reported = time.monotonic()
    for block in live.batches([VIDEO_KEY, "video_id", "segment", "run_id", EMBEDDING], VIDEOS_PER_TASK):
        pending.append(score_block.remote(block, texts_ref, k))
        sent += block.num_rows
        while len(pending) >= window:
            ready, pending = ray.wait(pending, num_returns=1)
            results.append(ray.get(ready[0]))
        if time.monotonic() - reported >= PROGRESS_SECONDS:
            reported = time.monotonic()
            logger.info("tag (%s): %d/%d video rows sent (%.0f rows/s)", what, sent, total, sent / (reported - started))
    results += ray.get(pending)
    logger.info("tag (%s): %d video rows scored against %d texts", what, total, len(texts))
    return results


def chosen_rows(candidates: pa.Table, k: int, min_score: float | None, per_segment: bool) -> pa.Table:
    """Each video's (or segment's) k best of the candidates, ranked (1 the best), at least `min_score`."""
    group = candidates["video_id"]
    if per_segment:
        group = pc.binary_join_element_wise(group, candidates["segment"].cast(pa.string()), KEY_SEPARATOR)
    codes = pc.dictionary_encode(group.combine_chunks()).indices.to_numpy()
    rows, rank = top_per_group(codes, candidates["_text"].to_numpy(), candidates[SCORE].to_numpy(),
                               candidates["segment"].to_numpy(zero_copy_only=False), k)
    chosen = candidates.take(pa.array(rows)).append_column("rank", pa.array(rank + 1, pa.int32()))
    return chosen if min_score is None else chosen.filter(pc.greater_equal(chosen[SCORE], min_score))


def tag_rows(chosen: pa.Table, corpus: Corpus, run_id: str, schema: pa.Schema) -> pa.Table:
    """The rows to store (schema.TAG_FIELDS)."""
    texts, n = corpus.texts.take(chosen["_text"]), chosen.num_rows
    key = pc.binary_join_element_wise(chosen["video_id"], chosen["segment"].cast(pa.string()),
                                      chosen["rank"].cast(pa.string()), KEY_SEPARATOR)
    return pa.table({TAG_KEY: key, "video_id": chosen["video_id"], "segment": chosen["segment"],
                     TEXT_KEY: texts[TEXT_KEY], "text": texts["text"], SCORE: chosen[SCORE], "rank": chosen["rank"],
                     "video_run_id": chosen["video_run_id"],
                     "model_fingerprint": pa.array([corpus.model["fingerprint"]] * n, pa.string()),
                     "run_id": pa.array([run_id] * n, pa.string())}, schema=schema)


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


def rows_of_videos(live: LiveRows, videos: pa.Table, ids: pa.Array) -> LiveRows:
    """The rows of `live` (whose key, video_id... are `videos`, in the same order) of videos `ids`."""
    return replace(live, rows=live.rows.filter(pc.is_in(videos["video_id"], value_set=ids)))


def tag(embeddings: str, texts: str, top_k: int = 5, min_score: float | None = None, per_segment: bool = False,
        address: str | None = None) -> dict:
    """Tag every video of the index at EMBEDDINGS with its `top_k` best texts of corpus `texts` (a
    name under EMBEDDINGS/texts, or a corpus directory); returns the run's stats."""
    if not 1 <= top_k <= MAX_ARRAY:
        raise UserError(f"--top-k must be between 1 and {MAX_ARRAY}")
    started, root, run_id = time.perf_counter(), embeddings.rstrip("/"), new_run_id()
    live, videos = video_rows(root)
    corpus = read_corpus_vectors(root, texts)
    check_same_model(f"corpus {corpus.name!r}", corpus.model["fingerprint"], live.model())
    check_tag_column(corpus.name, live.schema.names)
    directory = f"{root}/{TAGS}/{corpus.name}"
    remove_temp_files(directory)
    settings = {"top_k": top_k, "min_score": min_score, "per_segment": per_segment,
                "model": corpus.model["fingerprint"]}
    plan = plan_tags(videos, corpus.texts, read_stored_tags(directory, settings))
    plan_s = time.perf_counter() - started
    candidates = candidates_of(plan, live, videos, corpus, top_k, address)
    score_s, written = time.perf_counter() - started - plan_s, pa.array([], pa.string())
    if candidates:
        rows = tag_rows(chosen_rows(pa.concat_tables(candidates), top_k, min_score, per_segment), corpus, run_id,
                        tag_schema(corpus.model, settings))
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
              "config": {"embeddings": embeddings, "texts": texts}}
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
        try:
            done[name] = tag(root, name, settings["top_k"], settings["min_score"], settings["per_segment"], address)
        except UserError as e:  # a corpus of another model: the load refuses it in the same words
            logger.warning("tags of %s not brought up to date: %s", name, one_line(e))
            done[name] = {"error": one_line(e)}
    return done

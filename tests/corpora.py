"""Text corpora for `vidx texts` and `vidx tag` tests: phrases about the synth videos in each file
format, and the tags a brute-force (numpy) product gives, to hold stored tags to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from storage.schema import EMBEDDING, TAG_KEY, TEXT_KEY
from storage.table.dataset import read_live

FORMATS = ["txt", "parquet", "csv", "jsonl"]
PHRASES = ["a red circle moves to the left", "a blue square moves up", "something moves down",
           "a green triangle moves to the right", "a white square moves down", "a yellow circle moves up"]


def write_corpus(directory: Path, fmt: str, phrases: list[str]) -> Path:
    """The phrases as a corpus file of format `fmt`; the tables give ids and a category."""
    table = pa.table({TEXT_KEY: [f"t{i:02d}" for i in range(len(phrases))], "text": phrases,
                      "category": ["motion" if p.startswith("something") else "object" for p in phrases]})
    path = directory / f"{fmt}_corpus.{fmt}"
    if fmt == "txt":
        path.write_text("\n".join(phrases + ["", phrases[0]]) + "\n")  # a blank line and a repeat: one text each
    elif fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "csv":
        pa_csv.write_csv(table, path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
    return path


def brute_force_tags(index: Path, corpus: str, k: int, per_segment: bool) -> list[tuple]:
    """(video_id, segment, text_id, rank) of every tag, by numpy alone: scores as inner products,
    a video's score its best segment's (the first such), ties by text_id."""
    videos = read_live(str(index / "videos"), columns=["key", "video_id", "segment", "status", "run_id", EMBEDDING])
    videos = videos.filter(pa.compute.equal(videos["status"], "ok")).to_pylist()
    corpus_rows = sorted(read_live(str(index / "texts" / corpus), TEXT_KEY).to_pylist(), key=lambda r: r[TEXT_KEY])
    matrix = np.array([r[EMBEDDING] for r in corpus_rows], np.float32)
    best: dict[tuple, dict[int, tuple[float, int]]] = {}
    for row in videos:
        scores = np.array(row[EMBEDDING], np.float32) @ matrix.T
        group = (row["video_id"], row["segment"]) if per_segment else (row["video_id"],)
        for t, score in enumerate(scores):
            held = best.setdefault(group, {}).get(t)
            if held is None or (score, -row["segment"]) > (held[0], -held[1]):
                best[group][t] = (float(score), row["segment"])
    tags = []
    for group, by_text in best.items():
        ranked = sorted(by_text.items(), key=lambda item: (-item[1][0], item[0]))[:k]
        tags += [(group[0], segment, corpus_rows[t][TEXT_KEY], rank) for rank, (t, (_, segment)) in enumerate(ranked, 1)]
    return sorted(tags)


def stored_tags(index: Path, corpus: str) -> list[tuple]:
    rows = read_live(str(index / "tags" / corpus), TAG_KEY).to_pylist()
    return sorted((r["video_id"], r["segment"], r[TEXT_KEY], r["rank"]) for r in rows)

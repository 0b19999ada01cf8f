"""`vidx tag`: zero-shot tagging. Tags equal a brute-force product (ties in text_id order), are
incremental, keep what scores at least --min-score, and never shadow a video column."""

from __future__ import annotations

from operator import itemgetter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli import cli_error
from corpora import PHRASES, brute_force_tags, stored_tags
from jobs.pipeline.tag_run import retag
from jobs.tag import tag
from jobs.texts import texts
from storage.schema import TAG_KEY, TEXT_KEY
from storage.table.dataset import list_parts, read_live


@pytest.mark.parametrize("per_segment", [False, True])
def test_tags_equal_a_brute_force_product_with_ties_in_text_id_order(index_copy, tmp_path, per_segment):
    # "z" and "y" hold the same text: tied on every video, they rank in text_id order
    table = pa.table({TEXT_KEY: [f"p{i}" for i in range(len(PHRASES))] + ["z", "y"],
                      "text": PHRASES + [PHRASES[2], PHRASES[2]]})
    pq.write_table(table, tmp_path / "ties.parquet")
    texts(str(tmp_path / "ties.parquet"), str(index_copy))
    stats = tag(str(index_copy), "ties", top_k=len(PHRASES) + 2, per_segment=per_segment)
    assert stats["videos_scored"] == 12 and stats["texts_added"] == len(PHRASES) + 2
    assert stored_tags(index_copy, "ties") == brute_force_tags(index_copy, "ties", len(PHRASES) + 2, per_segment)
    ranks = {(v, s, t): r for v, s, t, r in stored_tags(index_copy, "ties")}
    for video, segment in {(v, s) for v, s, _ in ranks}:
        assert ranks[(video, segment, "y")] + 1 == ranks[(video, segment, "z")]


def test_tagging_is_incremental(index_copy, tmp_path):
    path = tmp_path / "grow.txt"
    path.write_text("\n".join(PHRASES[:3]) + "\n")
    texts(str(path), str(index_copy))
    first = tag(str(index_copy), "grow", top_k=2)
    assert (first["videos_scored"], first["rows_written"]) == (12, 24)
    parts = {p: Path(p).stat().st_mtime_ns for p in list_parts(str(index_copy / "tags" / "grow"))}

    again = tag(str(index_copy), "grow", top_k=2)
    assert (again["videos_scored"], again["videos_merged"], again["rows_written"]) == (0, 0, 0)
    assert {p: Path(p).stat().st_mtime_ns for p in list_parts(str(index_copy / "tags" / "grow"))} == parts

    path.write_text("\n".join(PHRASES[:4]) + "\n")  # one text added: only it is scored
    texts(str(path), str(index_copy))
    added = tag(str(index_copy), "grow", top_k=2)
    assert (added["videos_scored"], added["videos_merged"], added["texts_added"]) == (0, 12, 1)
    assert stored_tags(index_copy, "grow") == brute_force_tags(index_copy, "grow", 2, per_segment=False)

    tagged = [(v, t) for v, _, t, _ in stored_tags(index_copy, "grow")]
    gone = max(PHRASES[:4], key=lambda text: sum(t == text for _, t in tagged))  # a txt corpus' ids are its texts
    path.write_text("\n".join(p for p in PHRASES[:4] if p != gone) + "\n")  # the videos it tagged: scored again
    texts(str(path), str(index_copy))
    removed = tag(str(index_copy), "grow", top_k=2)
    assert (removed["texts_removed"], removed["videos_scored"]) == (1, len({v for v, t in tagged if t == gone}))
    assert stored_tags(index_copy, "grow") == brute_force_tags(index_copy, "grow", 2, per_segment=False)

    changed = tag(str(index_copy), "grow", top_k=3)  # another k: every video again
    assert changed["videos_scored"] == 12
    assert stored_tags(index_copy, "grow") == brute_force_tags(index_copy, "grow", 3, per_segment=False)
    nightly = retag(str(index_copy))["grow"]  # the nightly's step: the last settings, nothing new to score
    assert (nightly["videos_scored"], nightly["rows_written"]) == (0, 0)


def test_min_score_keeps_only_texts_scoring_at_least_it(index_copy, tmp_path):
    path = tmp_path / "scored.txt"
    path.write_text("\n".join(PHRASES) + "\n")
    texts(str(path), str(index_copy))
    tag(str(index_copy), "scored", top_k=2)
    every = read_live(str(index_copy / "tags" / "scored"), TAG_KEY).to_pylist()
    best_of = {r["video_id"]: r["score"] for r in every if r["rank"] == 1}
    threshold = float(np.median(list(best_of.values())))  # half the videos keep a tag or two, half none
    tag(str(index_copy), "scored", top_k=2, min_score=threshold)
    kept = read_live(str(index_copy / "tags" / "scored"), TAG_KEY).to_pylist()
    key = itemgetter("video_id", TEXT_KEY, "rank")
    assert sorted(map(key, kept)) == sorted(key(r) for r in every if r["score"] >= threshold)


def test_tags_named_as_a_video_column_are_refused_in_one_line(index_copy, tmp_path, capsys):
    (tmp_path / "colour.txt").write_text("red\nblue\n")
    texts(str(tmp_path / "colour.txt"), str(index_copy))  # the synth manifest has a `colour` column
    line = cli_error(capsys, "tag", "--embeddings", str(index_copy), "--texts", "colour")
    assert "would be a column the videos already have" in line

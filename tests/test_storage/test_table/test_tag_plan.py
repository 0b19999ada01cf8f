"""The tag plan (storage/table/tag_plan.py): which videos a tag run scores against every text, which
against the added texts only (merged with their stored tags), and the record of the texts and
settings a run scored with, which the next run plans against."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from storage.schema import TAG_KEY, TEXT_KEY
from storage.table.dataset import list_parts, write_part
from storage.table.tag_plan import (SCORED_TEXTS, StoredTags, plan_tags, read_scored_texts, read_stored_tags,
                                    stored_settings, write_scored_texts)

SETTINGS = {"top_k": 2, "min_score": None, "per_segment": False}
# The live video rows: video a in two segments, b and c whole; all encoded by run v1.
VIDEOS = pa.table({"video_id": ["a", "a", "b", "c"], "run_id": ["v1"] * 4})
TEXTS = pa.table({TEXT_KEY: ["t1", "t2"], "run_id": ["r1", "r1"]})  # the corpus, as its vectors are ordered
# What the last run stored: (video, segment, text, rank, score), each video's tags scored against v1.
TAGGED = [("a", 1, "t1", 1, 0.9), ("a", 0, "t2", 2, 0.5), ("b", 0, "t2", 1, 0.7), ("c", 0, "t1", 1, 0.8)]


def tag_rows(tagged: list[tuple], video_run_id: str = "v1", run_id: str = "g1") -> pa.Table:
    """Tag rows as `vidx tag` writes them."""
    return pa.table({
        TAG_KEY: [f"{v}#{s}#{r}" for v, s, _, r, _ in tagged], "video_id": [v for v, *_ in tagged],
        "segment": pa.array([s for _, s, *_ in tagged], pa.int32()), TEXT_KEY: [t for _, _, t, *_ in tagged],
        "text": [f"text {t}" for _, _, t, *_ in tagged], "score": [x for *_, x in tagged],
        "rank": pa.array([r for *_, r, _ in tagged], pa.int32()), "video_run_id": [video_run_id] * len(tagged),
        "model_fingerprint": ["m1"] * len(tagged), "run_id": [run_id] * len(tagged)})


def stored(same_settings: bool = True, tags: pa.Table | None = None) -> StoredTags:
    return StoredTags(tag_rows(TAGGED) if tags is None else tags, TEXTS, same_settings)


def videos_of(ids: pa.Array) -> list[str]:
    return sorted(ids.to_pylist())


def test_with_nothing_stored_every_video_is_scored_against_every_text():
    plan = plan_tags(VIDEOS, TEXTS, StoredTags(None, None, False))
    assert videos_of(plan.full) == ["a", "b", "c"] and videos_of(plan.merged) == []
    assert plan.added.tolist() == [0, 1] and plan.removed == 0 and plan.stored is None


def test_nothing_changed_scores_nothing():
    plan = plan_tags(VIDEOS, TEXTS, stored())
    assert (videos_of(plan.full), videos_of(plan.merged), plan.added.tolist(), plan.removed) == ([], [], [], 0)
    assert not plan.texts_changed


def test_added_texts_only_are_scored_and_merged_with_every_videos_stored_tags():
    texts = pa.table({TEXT_KEY: ["t1", "t2", "t3"], "run_id": ["r1", "r1", "r2"]})
    plan = plan_tags(VIDEOS, texts, stored())
    assert videos_of(plan.full) == [] and videos_of(plan.merged) == ["a", "b", "c"]
    assert plan.added.tolist() == [2] and plan.removed == 0 and plan.texts_changed
    # The stored tags the merge starts from, each text as its row in the corpus' vectors.
    kept = sorted(zip(plan.stored["video_id"].to_pylist(), plan.stored["segment"].to_pylist(),
                      plan.stored["_text"].to_pylist(), plan.stored["score"].to_pylist()))
    assert kept == [("a", 0, 1, 0.5), ("a", 1, 0, 0.9), ("b", 0, 1, 0.7), ("c", 0, 0, 0.8)]


def test_a_removed_text_rescores_the_videos_it_tagged_and_no_other():
    plan = plan_tags(VIDEOS, TEXTS.slice(0, 1), stored())  # t2 gone: it tagged a and b
    assert videos_of(plan.full) == ["a", "b"] and videos_of(plan.merged) == []
    assert plan.removed == 1 and plan.added.tolist() == [] and plan.texts_changed


def test_a_re_encoded_text_rescores_its_videos_and_is_added_for_the_rest():
    texts = pa.table({TEXT_KEY: ["t1", "t2"], "run_id": ["r2", "r1"]})  # t1 encoded again (an edited text)
    plan = plan_tags(VIDEOS, texts, stored())
    assert videos_of(plan.full) == ["a", "c"] and videos_of(plan.merged) == ["b"]  # t1 tagged a and c
    assert plan.added.tolist() == [0] and plan.removed == 1
    assert plan.stored["video_id"].to_pylist() == ["b"] and plan.stored["_text"].to_pylist() == [1]


def test_a_re_encoded_or_new_video_is_scored_against_every_text():
    videos = pa.table({"video_id": ["a", "a", "b", "c", "d"], "run_id": ["v1", "v1", "v2", "v1", "v1"]})
    plan = plan_tags(videos, TEXTS, stored())  # b encoded again by run v2, d new
    assert videos_of(plan.full) == ["b", "d"] and videos_of(plan.merged) == []
    texts = pa.table({TEXT_KEY: ["t1", "t2", "t3"], "run_id": ["r1", "r1", "r2"]})
    plan = plan_tags(videos, texts, stored())  # and a text added: the others get it merged
    assert videos_of(plan.full) == ["b", "d"] and videos_of(plan.merged) == ["a", "c"]


def test_other_settings_rescore_everything():
    plan = plan_tags(VIDEOS, TEXTS, stored(same_settings=False))
    assert videos_of(plan.full) == ["a", "b", "c"] and plan.added.tolist() == [0, 1] and plan.stored is None


# --- The record of what a run scored, beside its tags ---

def write_tags(directory, *tables: pa.Table) -> None:
    for table in tables:
        write_part(table, str(directory), TAG_KEY)


def test_the_scored_texts_and_settings_are_read_back_as_the_next_run_plans_with_them(tmp_path):
    directory = tmp_path / "tags" / "vocab"
    write_tags(directory, tag_rows(TAGGED))
    write_scored_texts(str(directory), TEXTS.append_column("text", pa.array(["x", "y"])), SETTINGS)
    assert stored_settings(str(directory)) == SETTINGS
    assert read_scored_texts(str(directory)).to_pylist() == TEXTS.to_pylist()  # text_id and run_id only
    again = read_stored_tags(str(directory), SETTINGS)
    assert again.same_settings and again.scored.to_pylist() == TEXTS.to_pylist()
    assert sorted(again.rows[TAG_KEY].to_pylist()) == sorted(tag_rows(TAGGED)[TAG_KEY].to_pylist())
    assert plan_tags(VIDEOS, TEXTS, again).full.to_pylist() == []  # the next run: nothing to score
    assert not read_stored_tags(str(directory), {**SETTINGS, "top_k": 3}).same_settings
    assert (directory / SCORED_TEXTS).is_file() and not [p for p in list_parts(str(directory)) if SCORED_TEXTS in p]


def test_a_newer_record_replaces_the_old_one(tmp_path):
    directory = tmp_path / "tags" / "vocab"
    write_tags(directory, tag_rows(TAGGED))
    write_scored_texts(str(directory), TEXTS, SETTINGS)
    texts = pa.table({TEXT_KEY: ["t1"], "run_id": ["r1"]})
    write_scored_texts(str(directory), texts, {**SETTINGS, "top_k": 3})
    assert stored_settings(str(directory)) == {**SETTINGS, "top_k": 3}
    assert read_scored_texts(str(directory)).to_pylist() == texts.to_pylist()


def test_tags_without_a_record_are_scored_again_whole(tmp_path):
    """A run that stopped after writing tags and before its record: the next run trusts none of them."""
    directory = tmp_path / "tags" / "vocab"
    assert read_scored_texts(str(directory)) is None and stored_settings(str(directory)) is None
    write_tags(directory, tag_rows(TAGGED))
    unrecorded = read_stored_tags(str(directory), SETTINGS)
    assert (unrecorded.rows, unrecorded.scored, unrecorded.same_settings) == (None, None, False)
    assert videos_of(plan_tags(VIDEOS, TEXTS, unrecorded).full) == ["a", "b", "c"]


def test_the_stored_tags_are_each_videos_newest(tmp_path):
    directory = tmp_path / "tags" / "vocab"
    rescored = [("a", 0, "t2", 1, 0.95)]  # video a scored again by run g2: its g1 tags are gone
    write_tags(directory, tag_rows(TAGGED, run_id="g1"), tag_rows(rescored, run_id="g2"))
    write_scored_texts(str(directory), TEXTS, SETTINGS)
    rows = read_stored_tags(str(directory), SETTINGS).rows
    live = sorted(zip(rows["video_id"].to_pylist(), rows[TEXT_KEY].to_pylist(), rows["run_id"].to_pylist()))
    assert live == [("a", "t2", "g2"), ("b", "t2", "g1"), ("c", "t1", "g1")]
    assert np.isclose(rows.filter(pa.compute.equal(rows["video_id"], "a"))["score"][0].as_py(), 0.95)


@pytest.mark.parametrize("settings", [SETTINGS, {"top_k": 5, "min_score": 0.25, "per_segment": True}])
def test_settings_round_trip_exactly(tmp_path, settings):
    write_scored_texts(str(tmp_path), TEXTS, settings)
    assert stored_settings(str(tmp_path)) == settings

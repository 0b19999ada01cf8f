"""Tagging's arithmetic at its edges: ties at the k-th place, a text's best segment, k beyond the corpus."""

from __future__ import annotations

import numpy as np

from storage.table.tag_scores import best_texts, top_per_group


def test_the_kth_place_goes_to_the_first_of_tied_texts():
    texts = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], np.float32)  # texts 1 and 2 tie, 0 and 3 tie
    videos = np.array([[0.6, 0.8], [0.8, 0.6]], np.float32)
    video, text, score = best_texts(videos, texts, 3)
    assert video.tolist() == [0, 0, 0, 1, 1, 1]
    assert text.tolist() == [1, 2, 0, 0, 3, 1]
    np.testing.assert_allclose(score, [0.8, 0.8, 0.6, 0.8, 0.8, 0.6])
    assert best_texts(videos, texts, 1)[1].tolist() == [1, 0]


def test_k_beyond_the_corpus_keeps_every_text_ranked():
    texts = np.eye(3, dtype=np.float32)
    video, text, _ = best_texts(np.array([[0.1, 0.3, 0.2]], np.float32), texts, 10)
    assert (video.tolist(), text.tolist()) == ([0, 0, 0], [1, 2, 0])


def test_a_text_scores_its_best_segment_and_the_first_of_tied_segments():
    # group 0: text 5 scores 0.9 in segments 1 and 0 (tied), 0.4 in segment 2; text 7 scores 0.9 once
    group = np.array([0, 0, 0, 0, 1])
    text = np.array([5, 5, 5, 7, 5])
    score = np.array([0.9, 0.9, 0.4, 0.9, 0.1])
    segment = np.array([1, 0, 2, 3, 0])
    rows, rank = top_per_group(group, text, score, segment, k=1)
    assert (rows.tolist(), rank.tolist()) == ([1, 4], [0, 0])  # text 5 (before 7) at segment 0; group 1's one
    rows, rank = top_per_group(group, text, score, segment, k=5)
    assert (text[rows].tolist(), segment[rows].tolist(), rank.tolist()) == ([5, 7, 5], [0, 3, 0], [0, 1, 0])

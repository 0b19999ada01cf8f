"""Caption tokens equal the paper's tokenizer and dataloader (_get_text, max_words=32)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoders import tokenize

REFERENCE = json.loads((Path(__file__).parent.parent / "fixtures" / "tokenizer_reference.json").read_text())
# The paper's tokenizer turns a literal "<|endoftext|>" typed in a caption into a control token;
# open_clip's (ours) reads it as text, so user input cannot end a caption early.
INJECTION = "<|startoftext|> special tokens inside <|endoftext|>"


@pytest.mark.parametrize("row", [r for r in REFERENCE if r["text"] != INJECTION], ids=lambda r: repr(r["text"][:30]))
def test_tokens_and_mask_match_the_paper(row):
    ids, mask = tokenize([row["text"]], max_words=32)
    assert ids[0].tolist() == row["input_ids"]
    assert mask[0].tolist() == row["attention_mask"]


def test_long_captions_are_truncated_to_32_tokens_ending_with_the_end_token():
    ids, mask = tokenize(["word " * 100], max_words=32)
    assert ids.shape == (1, 32) and mask.sum() == 32
    assert ids[0, 0] == 49406 and ids[0, -1] == 49407


def test_control_tokens_typed_in_a_caption_stay_text():
    ids, mask = tokenize([INJECTION], max_words=32)
    assert (ids[0] == 49407).sum() == 1 and (ids[0] == 49406).sum() == 1
    assert mask[0].sum() == int(ids[0].argmax()) + 1


def test_exclamation_mark_id_zero_is_not_padding():
    ids, mask = tokenize(["wow !$%"], max_words=32)
    assert ids[0, 2] == 0  # a word-internal "!" is BPE id 0, the same as padding
    assert mask[0].tolist() == [1] * 6 + [0] * 26

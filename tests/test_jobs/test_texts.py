"""`vidx texts`: video->text against any corpus. A corpus from each file format is encoded once,
an edited one only where it changed; a corpus that cannot be used is refused in one line."""

from __future__ import annotations

import pytest

from cli import cli_error, cli_json
from corpora import FORMATS, PHRASES, write_corpus
from jobs.texts import texts
from storage.schema import TEXT_KEY
from storage.table.dataset import read_live


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_corpus_from_each_format_is_encoded_once(index_copy, tmp_path, capsys, fmt):
    path = write_corpus(tmp_path, fmt, PHRASES)
    first = cli_json(capsys, "texts", "--input", str(path), "--output", str(index_copy))
    assert (first["corpus"], first["texts"], first["encoded"]) == (f"{fmt}_corpus", len(PHRASES), len(PHRASES))
    stored = read_live(str(index_copy / "texts" / f"{fmt}_corpus"), TEXT_KEY)
    assert sorted(stored["text"].to_pylist()) == sorted(PHRASES)
    if fmt != "txt":
        assert set(stored["category"].to_pylist()) == {"motion", "object"}
    again = cli_json(capsys, "texts", "--input", str(path), "--output", str(index_copy))
    assert (again["encoded"], again["reused"]) == (0, len(PHRASES))


def test_an_edited_corpus_encodes_only_its_new_texts_and_drops_the_gone(index_copy, tmp_path):
    path = write_corpus(tmp_path, "txt", PHRASES[:4])
    path = path.rename(tmp_path / "edited.txt")
    texts(str(path), str(index_copy))
    path.write_text("\n".join(PHRASES[1:5]) + "\n")
    stats = texts(str(path), str(index_copy))
    assert (stats["encoded"], stats["reused"]) == (1, 3)
    assert sorted(read_live(str(index_copy / "texts" / "edited"), TEXT_KEY)["text"].to_pylist()) == sorted(PHRASES[1:5])


def test_a_corpus_of_another_model_is_refused_in_one_line(index_copy, tmp_path, capsys):
    path = write_corpus(tmp_path, "txt", PHRASES)
    line = cli_error(capsys, "texts", "--input", str(path), "--output", str(index_copy), "--model", "demo")
    assert "the indexed videos by" in line


@pytest.mark.parametrize("bad, reason", [
    ("empty.txt", "no texts"), ("notext.csv", "no 'text' column"), ("dup.jsonl", "duplicate text_id 'a'"),
    ("missing.txt", "not found"), ("corpus.doc", "a corpus is .txt"),
])
def test_a_bad_corpus_is_one_line(index_copy, tmp_path, capsys, bad, reason):
    contents = {"empty.txt": "\n\n", "notext.csv": "label\nx\n",
                "dup.jsonl": '{"text_id": "a", "text": "x"}\n{"text_id": "a", "text": "y"}\n', "corpus.doc": "x"}
    if bad in contents:
        (tmp_path / bad).write_text(contents[bad])
    assert reason in cli_error(capsys, "texts", "--input", str(tmp_path / bad), "--output", str(index_copy))

"""Corpora (storage/table/corpus.py): a corpus file of each format read into text_id, text and its
metadata; what cannot be used refused before anything is encoded; and which texts an edited corpus
sends to the encoder again."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from errors import UserError
from storage.schema import TEXT_KEY
from storage.table.corpus import CorpusError, read_corpus, texts_to_encode
from storage.table.dataset import write_part

ROWS = [{"text_id": "t1", "text": "a red circle", "category": "shape"},
        {"text_id": "t2", "text": "something moves up", "category": "motion"}]


def write_table_corpus(path, rows: list[dict]) -> str:
    """`rows` as a corpus file of the format its suffix names."""
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".csv":
        names = list(rows[0])
        path.write_text(",".join(names) + "\n" + "".join(",".join(str(r[n]) for n in names) + "\n" for r in rows))
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_a_text_file_is_one_text_per_line_each_its_own_id(tmp_path):
    path = tmp_path / "tags.txt"
    path.write_text("  a red circle \n\nsomething moves up\na red circle\n")  # padding, a blank line, a repeat
    corpus = read_corpus(str(path))
    assert corpus.column_names == [TEXT_KEY, "text"]
    assert corpus.to_pylist() == [{"text_id": "a red circle", "text": "a red circle"},
                                  {"text_id": "something moves up", "text": "something moves up"}]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_a_table_keeps_its_ids_and_serves_its_other_columns_as_metadata(tmp_path, suffix):
    reordered = [{"category": r["category"], "text": r["text"], "text_id": r["text_id"]} for r in ROWS]
    corpus = read_corpus(write_table_corpus(tmp_path / f"corpus{suffix}", reordered))
    assert corpus.column_names == [TEXT_KEY, "text", "category"]  # id and text first, whatever the file's order
    assert corpus.to_pylist() == ROWS


def test_ids_that_are_numbers_are_read_as_strings(tmp_path):
    path = tmp_path / "numbered.jsonl"
    path.write_text('{"text_id": 5, "text": "a"}\n{"text_id": 6, "text": "b"}\n')
    assert read_corpus(str(path))[TEXT_KEY].to_pylist() == ["5", "6"]


@pytest.mark.parametrize("name, content, reason", [
    ("blank.csv", "text_id,text\nx1,\nx2,a cat\n", "an empty text"),
    ("spaces.csv", "text\n   \n", "an empty text"),
    ("dup.jsonl", '{"text_id": "a", "text": "x"}\n{"text_id": "a", "text": "y"}\n', "duplicate text_id 'a'"),
    ("run.jsonl", '{"text": "a", "run_id": "x"}\n', "column 'run_id' is reserved by vidx"),
    ("vector.jsonl", '{"text": "a", "embedding": [1.0]}\n', "column 'embedding' is reserved by vidx"),
    ("internal.jsonl", '{"text": "a", "_row": 1}\n', "column '_row' is reserved by vidx"),
    ("label.csv", "label\nx\n", "no 'text' column (columns: label)"),
    ("empty.txt", "\n \n", "no texts"),
    ("corpus.doc", "a red circle\n", "a corpus is .txt (one text per line), .parquet, .csv or .jsonl"),
])
def test_a_corpus_that_cannot_be_used_is_refused_naming_the_file_and_why(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CorpusError) as refused:
        read_corpus(str(path))
    assert str(refused.value).startswith(f"{path}: ") and reason in str(refused.value)
    assert isinstance(refused.value, UserError)  # the CLI's one line, exit 2


def test_a_missing_corpus_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="missing.txt: not found"):
        read_corpus(str(tmp_path / "missing.txt"))


def store_texts(directory, rows: list[dict], fingerprint: str = "m1", run_id: str = "run-1") -> None:
    """`rows` as `vidx texts` stores them: with the model's fingerprint, the run and a vector each."""
    table = pa.Table.from_pylist(rows).append_column("model_fingerprint", pa.array([fingerprint] * len(rows)))
    table = table.append_column("run_id", pa.array([run_id] * len(rows)))
    vectors = np.ones((len(rows), 4), np.float32)
    table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 4))
    write_part(table, str(directory), TEXT_KEY)


def to_encode(corpus: pa.Table, directory, fingerprint: str = "m1") -> list[tuple]:
    chosen = texts_to_encode(corpus, str(directory), fingerprint)
    return list(zip(chosen[TEXT_KEY].to_pylist(), chosen["_row"].to_pylist()))


def test_a_new_corpus_is_encoded_whole(tmp_path):
    corpus = pa.Table.from_pylist(ROWS)
    assert to_encode(corpus, tmp_path / "texts" / "new") == [("t1", 0), ("t2", 1)]


def test_unchanged_texts_are_reused_and_changed_ones_encoded_again(tmp_path):
    directory = tmp_path / "texts" / "vocab"
    store_texts(directory, ROWS)
    assert to_encode(pa.Table.from_pylist(ROWS), directory) == []  # the same corpus again: nothing to encode
    edited = [{"text_id": "t1", "text": "a red circle", "category": "shape"},          # unchanged
              {"text_id": "t2", "text": "something moves down", "category": "motion"},  # another text
              {"text_id": "t3", "text": "a blue square", "category": "shape"}]         # new
    assert to_encode(pa.Table.from_pylist(edited), directory) == [("t2", 1), ("t3", 2)]
    recategorised = [ROWS[0], {**ROWS[1], "category": "movement"}]  # metadata is part of what is stored
    assert to_encode(pa.Table.from_pylist(recategorised), directory) == [("t2", 1)]


def test_another_model_encodes_every_text_again(tmp_path):
    directory = tmp_path / "texts" / "vocab"
    store_texts(directory, ROWS, fingerprint="m1")
    assert to_encode(pa.Table.from_pylist(ROWS), directory, fingerprint="m2") == [("t1", 0), ("t2", 1)]


def test_a_new_metadata_column_encodes_every_text_again(tmp_path):
    directory = tmp_path / "texts" / "vocab"
    store_texts(directory, [{"text_id": r["text_id"], "text": r["text"]} for r in ROWS])
    assert to_encode(pa.Table.from_pylist(ROWS), directory) == [("t1", 0), ("t2", 1)]  # `category`: rows lack it


def test_the_newest_run_of_a_text_is_the_one_compared(tmp_path):
    directory = tmp_path / "texts" / "vocab"
    store_texts(directory, ROWS, run_id="run-1")
    store_texts(directory, [{**ROWS[1], "text": "something moves down"}], run_id="run-2")  # t2 edited, re-encoded
    edited = pa.Table.from_pylist([ROWS[0], {**ROWS[1], "text": "something moves down"}])
    assert to_encode(edited, directory) == []
    assert to_encode(pa.Table.from_pylist(ROWS), directory) == [("t2", 1)]  # back to the old text: encoded again

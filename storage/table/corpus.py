"""Text corpora: the phrases a user brings to describe videos with (a tag list, a taxonomy, sentences).

A corpus file is plain text (one text per line), or a Parquet, CSV or JSONL table with a `text`
column, an optional `text_id` (default: the text itself, so an id stays put when lines move) and
any other column, which is metadata served beside the text (`category`).
"""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from errors import UserError, one_line
from storage.schema import EMBEDDING, INTERNAL_PREFIX, STANDARD_COLUMNS, TEXT_KEY, VIDEO_KEY, VIDEOS

from .dataset import read_live, same_values
from .live_rows import scan_live
from .manifest import MANIFEST_FORMATS, check_unique, read_table

TEXT_FORMATS = {".txt": "text", **MANIFEST_FORMATS}


class CorpusError(UserError):
    """A corpus that cannot be used; nothing is encoded."""


def check_same_model(what: str, fingerprint: str, videos: dict | None) -> None:
    """Texts are searched and scored against the videos' vectors: one model made both, or no score means anything."""
    if videos is not None and fingerprint != videos["fingerprint"]:
        raise CorpusError(f"{what} is encoded by model {fingerprint}, the indexed videos by {videos['fingerprint']} "
                          f"({videos['spec'].get('name')}): encode the texts again with `vidx texts`")


def corpus_format(source: str) -> str:
    suffix = Path(source.split("?")[0]).suffix.lower()
    if suffix not in TEXT_FORMATS:
        raise CorpusError(f"{source}: a corpus is .txt (one text per line), .parquet, .csv or .jsonl")
    return TEXT_FORMATS[suffix]


def _read_lines(source: str) -> pa.Table:
    with fsspec.open(source, "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return pa.table({"text": pa.array([line for line in lines if line], pa.string())})


def validate_corpus(table: pa.Table, source: str) -> pa.Table:
    """text_id, text, then the metadata columns: every text non-empty, every id unique. Texts
    without an id are their own id, so a text given twice is one text."""
    if "text" not in table.column_names:
        raise CorpusError(f"{source}: no 'text' column (columns: {', '.join(table.column_names)})")
    texts = pc.utf8_trim_whitespace(table["text"].cast(pa.string()))
    if texts.null_count or pc.any(pc.equal(texts, "")).as_py():
        raise CorpusError(f"{source}: an empty text")
    table = table.set_column(table.column_names.index("text"), "text", texts)
    if TEXT_KEY in table.column_names:
        ids = table[TEXT_KEY].cast(pa.string())
        if ids.null_count:
            raise CorpusError(f"{source}: an empty {TEXT_KEY}")
        table = table.set_column(table.column_names.index(TEXT_KEY), TEXT_KEY, ids)
    else:
        table = table.add_column(0, TEXT_KEY, texts)
        table = table.take(pc.index_in(pc.unique(texts), value_set=texts))  # the first row of each text
    check_unique(table[TEXT_KEY], TEXT_KEY, source, CorpusError)
    reserved = sorted(c for c in table.column_names if c not in (TEXT_KEY, "text") and
                      (c in STANDARD_COLUMNS or c == EMBEDDING or c.startswith(INTERNAL_PREFIX)))
    if reserved:
        raise CorpusError(f"{source}: column {reserved[0]!r} is reserved by vidx; rename it")
    if table.num_rows == 0:
        raise CorpusError(f"{source}: no texts")
    return table.select([TEXT_KEY, "text", *(c for c in table.column_names if c not in (TEXT_KEY, "text"))])


def read_corpus(source: str) -> pa.Table:
    """A corpus file -> a validated table (text_id, text, metadata...). Raises CorpusError."""
    source = str(source)
    fmt = corpus_format(source)
    try:
        table = _read_lines(source) if fmt == "text" else read_table(source, fmt)
    except FileNotFoundError as e:
        raise CorpusError(f"{source}: not found") from e
    except (OSError, pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise CorpusError(f"{source}: unreadable ({one_line(e)})") from e
    return validate_corpus(table, source)


def indexed_model(output: str) -> dict | None:
    """The model record of the indexed videos under OUTPUT; None when none is indexed."""
    videos = scan_live(f"{output.rstrip('/')}/{VIDEOS}", VIDEO_KEY, status="ok")
    return None if videos is None or videos.rows.num_rows == 0 else videos.model()


def texts_to_encode(corpus: pa.Table, directory: str, fingerprint: str) -> pa.Table:
    """The corpus rows (with their `_row`) whose stored row under `directory` differs: a new id,
    another text or metadata, or another model."""
    corpus = corpus.append_column("_row", pa.array(np.arange(corpus.num_rows)))
    stored = read_live(directory, TEXT_KEY, [*corpus.column_names[:-1], "model_fingerprint", "run_id"])
    if stored is None:
        return corpus
    position = pc.index_in(corpus[TEXT_KEY], value_set=stored[TEXT_KEY].combine_chunks())
    found = stored.take(pc.fill_null(position, 0))
    same = pc.and_(pc.is_valid(position), pc.fill_null(pc.equal(found["model_fingerprint"], fingerprint), False))
    for column in corpus.column_names[:-1]:
        same = pc.and_(same, same_values(found[column], corpus[column]) if column in found.column_names
                       else pa.array(np.zeros(corpus.num_rows, bool)))
    return corpus.filter(pc.invert(same))

"""The texts job: a text corpus -> the index's text tower on Ray -> Parquet parts under OUTPUT/texts/NAME.

Usage: python -m jobs texts --input tags.txt|texts.parquet|texts.csv|texts.jsonl --output DIR [--name NAME]
           [--model NAME [--checkpoint PATH]] [--workers N] [--address ADDR] [--device auto|cpu]
Incremental: a text whose id, text, metadata and model are unchanged is not encoded again; texts
gone from the corpus are dropped. `vidx load` serves the corpus as collection NAME.
"""

from __future__ import annotations

import logging
import time
from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from encoders import VideoTextEncoder, create_model
from errors import UserError
from storage.table.compaction import compact
from storage.table.corpus import check_same_model, read_corpus
from storage.table.dataset import read_live, remove_temp_files
from storage.table.live_rows import scan_live
from storage.table.runs import new_run_id, write_run_record
from storage.schema import TEXT_KEY, TEXTS, VIDEO_KEY, VIDEOS, check_corpus_name, text_schema

from .cluster import connect
from .index import CAPTIONS_PER_BATCH, CAPTIONS_PER_BLOCK, blocks, embedder_options, model_record
from storage.table.index_plan import same_values
from .sink import ROWS_PER_PART, PartsDatasink
from .workers import CaptionEmbedder

logger = logging.getLogger(__name__)


def videos_model(output: str) -> dict | None:
    """The model record of the indexed videos under OUTPUT; None when none is indexed."""
    videos = scan_live(f"{output.rstrip('/')}/{VIDEOS}", VIDEO_KEY, status="ok")
    return None if videos is None or videos.rows.num_rows == 0 else videos.model()


def corpus_model(output: str, model: str | None, checkpoint: str | None) -> VideoTextEncoder:
    """The model texts are encoded with: the indexed videos', or --model where given (which must
    be the same model)."""
    videos = videos_model(output)
    if model is None:
        if videos is None:
            raise UserError(f"{output}: no indexed videos to take the model from; run vidx index first, "
                            "or give --model")
        return create_model(**videos["spec"], device="cpu")
    encoder = create_model(model, checkpoint=checkpoint, device="cpu")
    check_same_model(f"--model {model}", encoder.fingerprint, videos)
    return encoder


def texts_to_encode(corpus: pa.Table, directory: str, fingerprint: str) -> pa.Table:
    """The corpus rows (with their `_row`) whose stored row differs: a new id, another text or
    metadata, or another model."""
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


def encode_texts(encoder: VideoTextEncoder, corpus: pa.Table, todo: pa.Table, directory: str, run_id: str,
                 workers: int, device: str) -> dict:
    """Embed `todo` into parts under `directory`, metadata taken from `corpus` by row; the sink's stats."""
    schema = text_schema(encoder.dim, corpus.schema, model_record(encoder))
    sink = PartsDatasink(directory, schema, TEXT_KEY, {"run_id": run_id, "model_fingerprint": encoder.fingerprint},
                         manifest=corpus, rows_per_part=ROWS_PER_PART)
    (
        blocks(todo.select(["_row", TEXT_KEY, "text"]), CAPTIONS_PER_BLOCK)
        .map_batches(CaptionEmbedder, batch_size=CAPTIONS_PER_BATCH, batch_format="numpy",
                     **embedder_options(encoder.spec, workers, None if device == "auto" else device))
        .write_datasink(sink)
    )
    return dict(sink.stats)


def texts(input: str, output: str, name: str | None = None, model: str | None = None,
          checkpoint: str | None = None, workers: int = 1, address: str | None = None, device: str = "auto") -> dict:
    """Encode a corpus into OUTPUT/texts/NAME (NAME: the file's name without extension); returns
    the run's stats. Raises CorpusError / UserError before any work when it cannot run."""
    started = time.perf_counter()
    name = check_corpus_name(name or PurePosixPath(input.split("?")[0]).stem)
    corpus = read_corpus(input)
    encoder = corpus_model(output, model, checkpoint)
    directory, run_id = f"{output.rstrip('/')}/{TEXTS}/{name}", new_run_id()
    remove_temp_files(directory)
    todo = texts_to_encode(corpus, directory, encoder.fingerprint)
    logger.info("corpus %s: %d texts, %d to encode", name, corpus.num_rows, todo.num_rows)
    plan_s = time.perf_counter() - started
    encoded = {}
    if todo.num_rows:
        connect(address)
        encoded = encode_texts(encoder, corpus, todo, directory, run_id, workers, device)
    step = time.perf_counter()
    compaction, _ = compact(directory, corpus[TEXT_KEY].combine_chunks(), TEXT_KEY)
    stats = {"corpus": name, "texts": corpus.num_rows, "encoded": encoded.get("rows", 0),
             "reused": corpus.num_rows - todo.num_rows, "rows_dropped": compaction["rows_dropped"],
             "plan_s": round(plan_s, 3), "compact_s": round(time.perf_counter() - step, 3),
             "total_s": round(time.perf_counter() - started, 3)}
    record = {"run_id": run_id, "command": "texts", "stats": stats, "compaction": compaction,
              "model": {"spec": encoder.spec, "fingerprint": encoder.fingerprint},
              "config": {"input": str(input), "output": output, "name": name, "workers": workers, "device": device}}
    stats["stats_file"] = write_run_record(output, run_id, record)
    return stats

"""The texts run: a text corpus -> the index's text tower on Ray -> Parquet parts under OUTPUT/texts/NAME.

Incremental: a text whose id, text, metadata and model are unchanged is not encoded again; texts
gone from the corpus are dropped. `vidx load` serves the corpus as collection NAME.
"""

from __future__ import annotations

import logging
import time
from pathlib import PurePosixPath

import pyarrow as pa

from encoders import VideoTextEncoder, create_model
from errors import UserError
from storage.schema import TEXT_KEY, TEXTS, check_corpus_name, text_schema
from storage.table.compaction import compact
from storage.table.corpus import check_same_model, indexed_model, read_corpus, texts_to_encode
from storage.table.dataset import ROWS_PER_PART, remove_temp_files
from storage.table.runs import new_run_id, write_run_record

from .cluster import CAPTIONS_PER_BATCH, CAPTIONS_PER_BLOCK, blocks, connect, embedder_options
from .options import CorpusOptions
from .sink import PartsDatasink
from .workers import CaptionEmbedder

logger = logging.getLogger(__name__)


def corpus_model(output: str, options: CorpusOptions) -> VideoTextEncoder:
    """The model texts are encoded with: the indexed videos', or --model where given (which must
    be the same model)."""
    videos = indexed_model(output)
    if options.model is None:
        if videos is None:
            raise UserError(f"{output}: no indexed videos to take the model from; run vidx index first, "
                            "or give --model")
        return create_model(**videos["spec"], device="cpu")
    encoder = create_model(options.model, checkpoint=options.checkpoint, device="cpu")
    check_same_model(f"--model {options.model}", encoder.fingerprint, videos)
    return encoder


def encode_texts(encoder: VideoTextEncoder, corpus: pa.Table, todo: pa.Table, directory: str, run_id: str,
                 options: CorpusOptions) -> dict:
    """Embed `todo` into parts under `directory`, metadata taken from `corpus` by row; the sink's stats."""
    schema = text_schema(encoder.dim, corpus.schema, encoder.record)
    sink = PartsDatasink(directory, schema, TEXT_KEY, {"run_id": run_id, "model_fingerprint": encoder.fingerprint},
                         manifest=corpus, rows_per_part=ROWS_PER_PART)
    device = None if options.device == "auto" else options.device
    (
        blocks(todo.select(["_row", TEXT_KEY, "text"]), CAPTIONS_PER_BLOCK)
        .map_batches(CaptionEmbedder, batch_size=CAPTIONS_PER_BATCH, batch_format="numpy",
                     **embedder_options(encoder.spec, options.workers, device))
        .write_datasink(sink)
    )
    return dict(sink.stats)


def run_texts(source: str, output: str, options: CorpusOptions) -> dict:
    """Encode the corpus file `source` into OUTPUT/texts/NAME (NAME: --name, else the file's name
    without extension); returns the run's stats. Raises CorpusError / UserError before any work when
    it cannot run."""
    started = time.perf_counter()
    name = check_corpus_name(options.name or PurePosixPath(source.split("?")[0]).stem)
    corpus = read_corpus(source)
    encoder = corpus_model(output, options)
    directory, run_id = f"{output.rstrip('/')}/{TEXTS}/{name}", new_run_id()
    remove_temp_files(directory)
    todo = texts_to_encode(corpus, directory, encoder.fingerprint)
    logger.info("corpus %s: %d texts, %d to encode", name, corpus.num_rows, todo.num_rows)
    plan_s = time.perf_counter() - started
    encoded = {}
    if todo.num_rows:
        connect(options.address)
        encoded = encode_texts(encoder, corpus, todo, directory, run_id, options)
    step = time.perf_counter()
    compaction, _ = compact(directory, corpus[TEXT_KEY].combine_chunks(), TEXT_KEY)
    stats = {"corpus": name, "texts": corpus.num_rows, "encoded": encoded.get("rows", 0),
             "reused": corpus.num_rows - todo.num_rows, "rows_dropped": compaction["rows_dropped"],
             "plan_s": round(plan_s, 3), "compact_s": round(time.perf_counter() - step, 3),
             "total_s": round(time.perf_counter() - started, 3)}
    record = {"run_id": run_id, "command": "texts", "stats": stats, "compaction": compaction,
              "model": {"spec": encoder.spec, "fingerprint": encoder.fingerprint},
              "config": {"input": str(source), "output": output, **options.model_dump(), "name": name}}
    stats["stats_file"] = write_run_record(output, run_id, record)
    return stats

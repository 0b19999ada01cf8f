"""How answers are written: a statement's rows as --format asks, a search's hits one line each."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from storage.schema import TEXT_KEY, VIDEO_KEY

from .questions import QueryFormat


def formatted(rows: pa.Table, output_format: QueryFormat) -> bytes:
    """The rows as --format asks: a table to read (DuckDB's), a JSON list, CSV with a header, or Parquet."""
    if output_format == "json":
        return (json.dumps(rows.to_pylist(), default=str) + "\n").encode()
    if output_format == "table":
        return (str(duckdb.arrow(rows)) if rows.num_columns else "(no columns)\n").encode()
    sink = pa.BufferOutputStream()
    if output_format == "csv":
        pa_csv.write_csv(rows, sink)
    else:
        pq.write_table(rows, sink)
    return sink.getvalue().to_pybytes()


def hit_lines(hits: list[dict]) -> str:
    """A search's hits, one line each: rank, score, id, span and what it is (its text or uri)."""
    lines = []
    for rank, hit in enumerate(hits, 1):
        ident = hit.get(VIDEO_KEY) or hit.get("caption_id") or hit.get(TEXT_KEY)
        span = f" [{hit['start_s']:.1f}-{hit['end_s']:.1f}s]" if hit.get("start_s") is not None else ""
        extra = hit.get("text") or hit.get("uri") or ""
        lines.append(f"{rank:>3}. {hit['score']:.4f}  {ident}{span}  {extra}")
    return "\n".join(lines)

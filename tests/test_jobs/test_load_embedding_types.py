"""`vidx load` of embeddings written by another tool: lists of float64 (what pandas and Spark write)
or float16, of any list type, are read as float32 and answer as the float32 original does, on each
engine and through a night; an embedding column of anything but floats is refused in one line
before anything is built."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cli import cli_error, cli_json
from storage.milvus.store import VectorStore
from storage.table.dataset import write_part

MODEL = {"spec": {"name": "tiny"}, "fingerprint": "f"}
# Embedding columns as other tools write them, by the alias each is served under.
FOREIGN_EMBEDDINGS = {"doubles": pa.list_(pa.float64()), "wide_doubles": pa.large_list(pa.float64()),
                      "fixed_doubles": pa.list_(pa.float64(), 8), "halves": pa.large_list(pa.float16())}


def unit_vectors(n: int, dim: int = 8) -> np.ndarray:
    """(n, dim) float32 unit vectors, each value exact in float16: every float type holds the same."""
    vectors = np.random.default_rng(0).standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)


def write_rows(directory: Path, video_ids: list[str], embedding: pa.Array) -> str:
    """One part of the index at `directory`: a whole-video row per id, with `embedding`."""
    table = pa.table({"key": [f"{v}#0" for v in video_ids], "video_id": video_ids, "status": ["ok"] * len(video_ids),
                      "run_id": ["run-1"] * len(video_ids), "embedding": embedding})
    write_part(table.replace_schema_metadata({b"vidx.model": json.dumps(MODEL).encode()}),
               str(directory / "videos"), "key")
    return str(directory)


def write_videos(directory: Path, vectors: np.ndarray, first: int = 0, kind: pa.DataType | None = None) -> str:
    """Videos v{first}, v{first + 1}... with `vectors`, their embedding column of type `kind` (vidx's
    fixed_size_list<float32>[D] when None)."""
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    return write_rows(directory, [f"v{i}" for i in range(first, first + len(vectors))],
                      embedding.cast(kind or embedding.type))


def answers(capsys, db: str, alias: str) -> tuple[list, list]:
    """(keys, scores) of a query and of a search over `alias`: the neighbours of video v3."""
    query = cli_json(capsys, "query", "--db", db, "--json",
                     f"SELECT key, score FROM {alias} ORDER BY similarity(ID('v3')) DESC LIMIT 5")
    search = cli_json(capsys, "search", "--db", db, "--collection", alias, "--video-id", "v3", "-k", "5", "--json")
    return ([[row["key"] for row in rows] for rows in (query, search)],
            [[row["score"] for row in rows] for rows in (query, search)])


def test_embeddings_of_another_float_type_are_loaded_as_float32_into_each_engine(db, tmp_path, capsys):
    """A load, and a night adding rows of that type, answer every door as the float32 original does."""
    vectors = unit_vectors(60)
    cli_json(capsys, "load", "--embeddings", write_videos(tmp_path / "float32", vectors), "--db", db)
    keys, scores = answers(capsys, db, "videos")
    for alias, kind in FOREIGN_EMBEDDINGS.items():
        index = tmp_path / alias
        built = cli_json(capsys, "load", "--embeddings", write_videos(index, vectors[:40], kind=kind), "--db", db,
                         "--collection", alias)[alias]
        write_videos(index, vectors[40:], first=40, kind=kind)
        night = cli_json(capsys, "load", "--embeddings", str(index), "--db", db, "--collection", alias)[alias]
        assert (built["built"], night["built"], night["night"], night["added"]) == (True, False, 2, 20), alias
        got_keys, got_scores = answers(capsys, db, alias)
        assert got_keys == keys, alias
        assert got_scores == [[pytest.approx(s, abs=1e-6) for s in door] for door in scores], alias


@pytest.mark.parametrize("embedding", [pa.array([[1, 0]] * 3, pa.list_(pa.int32())), pa.array(["0.5,0.5"] * 3)],
                         ids=["integers", "text"])
def test_embeddings_that_are_not_floats_are_refused_in_one_line_before_anything_is_built(embedding, tmp_path, capsys):
    index = write_rows(tmp_path / "index", ["a", "b", "c"], embedding)
    line = cli_error(capsys, "load", "--embeddings", index, "--db", str(tmp_path / "vidx.db"))
    assert "column 'embedding' is " in line
    assert line.endswith("an embedding is a list of floats (float16, float32 or float64), stored as float32")
    assert not (tmp_path / "vidx.db").exists()


def test_float_lists_of_unequal_lengths_are_refused_in_one_line_and_serve_nothing(tmp_path, capsys):
    index, db = tmp_path / "index", str(tmp_path / "vidx.db")
    write_videos(index, unit_vectors(3), kind=pa.list_(pa.float64()))
    write_videos(index, unit_vectors(2, dim=4), first=3, kind=pa.list_(pa.float64()))
    line = cli_error(capsys, "load", "--embeddings", str(index), "--db", db)
    assert re.search(r"column 'embedding' cannot be read as fixed_size_list<item: float>\[[48]\]: .* expected size", line)
    with VectorStore(db) as store:  # and no half-built version is left behind
        assert store.alias_target("videos") is None and store.versions("videos") == []

"""Manifests: which videos to index. Parquet, CSV, JSONL, or a directory / glob of video files.

Columns: `uri` (required; a local path or any fsspec URL), `video_id` (default: the file name
without extension), `captions` (optional; a string or a list), and any other column, which is
metadata that travels with the video to Parquet and Milvus.
"""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv
import pyarrow.json
import pyarrow.parquet as pq

from errors import UserError, one_line

from storage.schema import INTERNAL_PREFIX, RESERVED_COLUMNS

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}
MANIFEST_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json", ".ndjson": "json"}


class ManifestError(UserError):
    """A manifest that cannot be used; the job stops before any work starts."""


def read_table(path: str, fmt: str) -> pa.Table:
    with fsspec.open(path, "rb") as f:
        if fmt == "parquet":
            return pq.read_table(f)
        if fmt == "csv":
            return pyarrow.csv.read_csv(f)
        return pyarrow.json.read_json(f)


def _list_videos(pattern: str) -> pa.Table:
    fs, _, paths = fsspec.get_fs_token_paths(pattern)
    if len(paths) == 1 and fs.isdir(paths[0]):
        paths = [p for p in fs.find(paths[0]) if not os.path.basename(p).startswith(".")]
    local = isinstance(fs, LocalFileSystem)
    uris = sorted(p if local else fs.unstrip_protocol(p)
                  for p in paths if os.path.splitext(p)[1].lower() in VIDEO_EXTENSIONS)
    return pa.table({"uri": pa.array(uris, pa.string())})


def _derive_video_ids(uris: pa.Array) -> pa.Array:
    return pa.array([os.path.splitext(os.path.basename(str(u).rstrip("/")))[0] for u in uris.to_pylist()],
                    pa.string())


def _normalise_captions(column: pa.ChunkedArray) -> pa.Array:
    """A string or a list of strings per row -> list<string>; null -> []."""
    values = []
    for value in column.to_pylist():
        if value is None:
            values.append([])
        elif isinstance(value, str):
            values.append([value])
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            values.append(value)
        else:
            raise ManifestError(f"captions must be a string or a list of strings, got {value!r}")
    return pa.array(values, pa.list_(pa.string()))


def validate_manifest(table: pa.Table, source: str) -> pa.Table:
    """Check and normalise: uri present and non-empty, unique video_id, captions as lists."""
    if table.num_rows == 0:
        raise ManifestError(f"{source}: no videos")
    if "uri" not in table.column_names:
        raise ManifestError(f"{source}: no 'uri' column (columns: {', '.join(table.column_names)})")
    uris = table["uri"].cast(pa.string())
    if uris.null_count or pc.any(pc.equal(pc.utf8_trim_whitespace(uris), "")).as_py():
        raise ManifestError(f"{source}: empty uri in row {_first_empty(uris)}")
    table = table.set_column(table.column_names.index("uri"), "uri", uris)
    if "video_id" in table.column_names:
        ids = table["video_id"].cast(pa.string())
        if ids.null_count:
            raise ManifestError(f"{source}: empty video_id")
        table = table.set_column(table.column_names.index("video_id"), "video_id", ids)
    else:
        table = table.add_column(1, "video_id", _derive_video_ids(uris.combine_chunks()))
    check_unique(table["video_id"], "video_id", source, ManifestError)
    reserved = sorted(c for c in table.column_names if c in RESERVED_COLUMNS or c.startswith(INTERNAL_PREFIX))
    if reserved:
        raise ManifestError(f"{source}: column {reserved[0]!r} is reserved by vidx; rename it")
    captions = _normalise_captions(table["captions"]) if "captions" in table.column_names else pa.array(
        [[]] * table.num_rows, pa.list_(pa.string()))
    table = table.drop_columns([c for c in ("captions",) if c in table.column_names])
    return table.append_column("captions", captions)


def check_unique(ids: pa.ChunkedArray, column: str, source: str, error: type[UserError]) -> None:
    """Refuse a table whose `column` holds a value twice, naming the first such value."""
    counts = pc.value_counts(ids)
    duplicated = [v["values"].as_py() for v in counts if v["counts"].as_py() > 1]
    if duplicated:
        raise error(f"{source}: duplicate {column} {duplicated[0]!r} ({len(duplicated)} duplicated in all)")


def _first_empty(uris: pa.ChunkedArray) -> int:
    return next(i for i, u in enumerate(uris.to_pylist()) if u is None or not u.strip())


def read_manifest(source: str | Path) -> pa.Table:
    """A manifest file, a directory of videos, or a glob -> a validated table (uri, video_id, ...,
    captions). Raises ManifestError with the reason."""
    source = str(source)
    fmt = MANIFEST_FORMATS.get(Path(source.split("?")[0]).suffix.lower())
    try:
        if fmt is None:
            table = _list_videos(source)
        else:
            table = read_table(source, fmt)
    except FileNotFoundError as e:
        raise ManifestError(f"{source}: not found") from e
    except (OSError, pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise ManifestError(f"{source}: unreadable ({one_line(e)})") from e
    return validate_manifest(table, source)

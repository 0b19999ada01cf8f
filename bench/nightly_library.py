"""The library a nightly bench runs over: empty video files in a sharded tree, the manifests of a
baseline and of each kind of night, and the index of a baseline in which every video is already
encoded (rows as the encoder writes them, vectors of the `tiny` model's width)."""

from __future__ import annotations

from pathlib import Path

CHANGED = 0.01  # of the library, for each kind of change
VIDEOS_PER_DIRECTORY = 1000
BASE_RUN = "20260101T000000000000Z-bench0"  # sorts before every run a night makes
MODEL = "tiny"
# A 10 s clip's figures, in every row.
FILLED = {"segment": 0, "start_s": 0.0, "end_s": 10.0, "duration_s": 10.0, "fps": 25.0, "width": 320, "height": 240,
          "num_frames": 250, "sampled_frames": 12}


def write_encoded_rows(run, videos, rng) -> None:
    """What the encoder writes for `videos` (video_id, uri, file_stat, _row: their manifest row),
    in parts of the run's size: one whole-video row each, a unit vector of the model's width, every
    served column filled (Milvus 2.3 has no nullable fields)."""
    import numpy as np
    import pyarrow as pa

    from storage.table.dataset import conform, write_part

    dim, schema = run.encoder.dim, run.video_schema()
    for start in range(0, videos.num_rows, run.options.rows_per_part):
        rows = videos.slice(start, run.options.rows_per_part)
        m = rows.num_rows
        vectors = rng.standard_normal((m, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        columns = {name: pa.array(np.full(m, value)) for name, value in FILLED.items()}
        columns.update({"key": pa.array([f"{v}#0" for v in rows["video_id"].to_pylist()]), "video_id": rows["video_id"],
                        "uri": rows["uri"], "file_stat": rows["file_stat"], "content_fingerprint": rows["file_stat"],
                        "status": pa.array(["ok"] * m),
                        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
                        **{k: pa.array([v] * m, pa.string()) for k, v in run.constants.items()}})
        metadata = run.metadata.take(rows["_row"])
        columns.update({c: metadata[c] for c in metadata.column_names if c not in columns})
        write_part(conform(columns, m, schema), run.videos_dir, "key")


def video_path(root: Path, i: int, kind: str = "videos") -> Path:
    return root / kind / f"{i // VIDEOS_PER_DIRECTORY:04d}" / f"{i:07d}.mp4"


def make_library(root: Path, largest: int) -> None:
    """Empty files: the library, the added videos of the largest night, and new files of changed ones."""
    extra = int(largest * CHANGED)
    for kind, ids in (("videos", range(largest + extra)), ("changed", range(largest))):
        for i in ids:
            path = video_path(root, i, kind)
            if i % VIDEOS_PER_DIRECTORY == 0:
                path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "videos" or i % 100 == 3:
                path.touch()


def manifests(library: Path, n: int, out: Path) -> dict[str, Path]:
    """The baseline manifest of n videos, and each night's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = range(n)
    base = {"uri": [str(video_path(library, i)) for i in ids], "video_id": [f"v{i:07d}" for i in ids],
            "genre": ["library"] * n}
    picked = {kind: {i for i in ids if i % 100 == offset} for kind, offset in (("deleted", 2), ("changed", 3),
                                                                                ("edited", 1))}
    added = range(n, n + int(n * CHANGED))
    change = {"uri": [str(video_path(library, i, "changed" if i in picked["changed"] else "videos"))
                      for i in ids if i not in picked["deleted"]] + [str(video_path(library, i)) for i in added],
              "video_id": [f"v{i:07d}" for i in ids if i not in picked["deleted"]] + [f"v{i:07d}" for i in added]}
    change["genre"] = ["library"] * len(change["uri"])
    metadata = {**base, "genre": ["edited" if i in picked["edited"] else "library" for i in ids]}
    paths = {}
    for name, columns in (("base", base), ("noop", base), ("change", change), ("metadata", metadata)):
        paths[name] = out / f"manifest-{name}.parquet"
        pq.write_table(pa.table(columns), paths[name])
    return paths


def write_baseline_index(manifest: Path, output: Path) -> None:
    """The index as a night of the code under test leaves it: every video encoded by the `tiny`
    model in one run, in parts of 256 rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.pipeline.index_run import IndexRun, create_driver_model
    from jobs.pipeline.options import IndexOptions
    from storage.table.files import list_stamps

    table = pq.read_table(manifest)
    options = IndexOptions(model=MODEL)
    run = IndexRun(BASE_RUN, create_driver_model(options), table, str(output / "videos"), str(output / "captions"),
                   options)
    videos = table.select(["video_id", "uri"]).append_column("file_stat", list_stamps(table["uri"]))
    write_encoded_rows(run, videos.append_column("_row", pa.array(np.arange(table.num_rows))), np.random.default_rng(1))

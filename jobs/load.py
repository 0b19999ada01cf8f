"""The load job: Parquet embeddings -> a new collection version, validated, then the alias swap.

Usage: python -m jobs load --embeddings DIR --db URI [--collection videos]
"""

from __future__ import annotations

from storage.collections import load_version
from storage.dataset import CAPTIONS, VIDEOS, scan_live
from storage.runs import new_run_id
from storage.vectorstore import VectorStore

from .errors import UserError


def load(embeddings: str, db: str, collection: str = "videos", skip_unchanged: bool = False) -> dict:
    """Load OUTPUT/videos (and OUTPUT/captions when present) into `db`; returns what was swapped.
    `skip_unchanged`: keep a served version that already holds the same rows (see load_version)."""
    videos = scan_live(f"{embeddings.rstrip('/')}/{VIDEOS}", "key", status="ok")
    if videos is None or videos.rows.num_rows == 0:
        raise UserError(f"{embeddings}: no 'ok' video rows to load")
    store = VectorStore(db)
    version = new_run_id().replace("-", "_").lower()
    result = {"videos": load_version(store, videos, collection, version, skip_unchanged)}
    captions = scan_live(f"{embeddings.rstrip('/')}/{CAPTIONS}", "caption_id")
    if captions is not None and captions.rows.num_rows:
        result["captions"] = load_version(store, captions, "captions", version, skip_unchanged)
    return result

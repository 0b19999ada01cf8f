"""Plan an index run: which videos to encode, which to reuse, which only need new metadata."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from storage.dataset import read_live
from storage.files import file_stat

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    encode: list[dict] = field(default_factory=list)  # {_row, video_id, uri, file_stat}
    refresh: list[int] = field(default_factory=list)  # manifest rows whose stored rows get new metadata
    reused: list[str] = field(default_factory=list)  # video_ids kept as they are
    changed: list[str] = field(default_factory=list)  # video_ids in `encode` that had rows before
    deleted: list[str] = field(default_factory=list)  # video_ids with rows, gone from the manifest
    captions: list[dict] = field(default_factory=list)  # {caption_id, video_id, text} to encode
    captions_reused: int = 0


def metadata_columns(manifest: pa.Table) -> list[str]:
    return [c for c in manifest.column_names if c not in ("uri", "video_id", "captions")]


def _previous_rows(directory: str, columns: list[str]) -> dict[str, list[dict]]:
    """The rows each video has now (its newest run's), grouped by video_id."""
    rows = read_live(directory, key_column=columns[0], columns=columns)
    if rows is None:
        return {}
    grouped: dict[str, list[dict]] = {}
    for row in rows.to_pylist():
        grouped.setdefault(row["video_id"], []).append(row)
    return grouped


def _reusable(previous: list[dict], uri: str, stat: str | None, model_fingerprint: str,
              segment_seconds: float | None) -> bool:
    return bool(previous) and all(
        r["uri"] == uri and r["file_stat"] == stat and r["model_fingerprint"] == model_fingerprint
        and r.get("segment_seconds") == segment_seconds
        for r in previous
    )


def plan_videos(manifest: pa.Table, videos_dir: str, model_fingerprint: str,
                segment_seconds: float | None, plan: Plan) -> None:
    meta = metadata_columns(manifest)
    previous = _previous_rows(
        videos_dir, ["key", "video_id", "uri", "file_stat", "model_fingerprint", "segment_seconds", "run_id", *meta]
    )
    for i, row in enumerate(manifest.select(["uri", "video_id", *meta]).to_pylist()):
        stat = file_stat(row["uri"])
        prior = previous.get(row["video_id"], [])
        if not _reusable(prior, row["uri"], stat, model_fingerprint, segment_seconds):
            plan.encode.append({"_row": i, "video_id": row["video_id"], "uri": row["uri"], "file_stat": stat})
            if prior:
                plan.changed.append(row["video_id"])
        elif any(r.get(c) != row[c] for r in prior for c in meta) or any(c not in prior[0] for c in meta):
            plan.refresh.append(i)
        else:
            plan.reused.append(row["video_id"])
    plan.deleted = sorted(set(previous) - set(manifest["video_id"].to_pylist()))


def plan_captions(manifest: pa.Table, captions_dir: str, model_fingerprint: str, plan: Plan) -> None:
    """Captions are reused per video when its texts and the model are unchanged."""
    previous = _previous_rows(captions_dir, ["caption_id", "video_id", "text", "model_fingerprint", "run_id"])
    for video_id, texts in zip(manifest["video_id"].to_pylist(), manifest["captions"].to_pylist()):
        prior = sorted(previous.get(video_id, []), key=lambda r: int(r["caption_id"].rsplit("#", 1)[1]))
        if texts and [r["text"] for r in prior] == texts and all(
            r["model_fingerprint"] == model_fingerprint for r in prior
        ):
            plan.captions_reused += len(texts)
            continue
        plan.captions.extend(
            {"caption_id": f"{video_id}#{n}", "video_id": video_id, "text": text} for n, text in enumerate(texts)
        )


def make_plan(manifest: pa.Table, videos_dir: str, captions_dir: str, model_fingerprint: str,
              segment_seconds: float | None) -> Plan:
    plan = Plan()
    plan_videos(manifest, videos_dir, model_fingerprint, segment_seconds, plan)
    plan_captions(manifest, captions_dir, model_fingerprint, plan)
    logger.info(
        "plan: %d to encode (%d of them changed), %d reused, %d metadata-only, %d deleted; "
        "captions: %d to encode, %d reused", len(plan.encode), len(plan.changed), len(plan.reused),
        len(plan.refresh), len(plan.deleted), len(plan.captions), plan.captions_reused,
    )
    return plan


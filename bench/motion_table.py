"""The paper's motion claim in miniature: CLIP2Video (TDB + TAB) against order-blind mean pooling.

Usage: python bench/motion_table.py [--train-videos 400] [--test-videos 100] [--epochs 100] [--out DIR]

Both heads start from the same initialisation ('tiny': one seeded random CLIP; CLIP2Video adds its
temporal modules) and are trained the same way by jobs.train (same videos, epochs, batch, learning
rate, seed) on synth videos (seed 1000). Then text->video R@1 on held-out synth videos (seed 7),
separately for full captions ("a red circle moves to the left") and direction-only ones ("something
moves to the left"): there only the order of the frames tells the answer. Direction-only captions
repeat (four distinct ones), so their R@1 is capped at about 4 / test videos; the last column says
how many of the top-k videos (k = videos with that direction) move the captioned way.
Prints a markdown table, then one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from encoders import create_model
from encoders.video import decode_video
from jobs.evaluation import text_to_video_metrics
from jobs.synth import synth
from jobs.train import train

TRAIN_SEED, TEST_SEED = 1000, 7
HEADS = {"meanp": ("clip-meanp", "mean pooling (meanP)"), "clip2video": ("clip2video", "CLIP2Video (TDB + TAB)")}
KINDS = ("full", "direction")  # the order of jobs.synth's captions


def direction_precision(similarity: np.ndarray, directions: np.ndarray) -> float:
    """Mean over captions of the share of its top-k videos moving its way, k = videos that do."""
    shares = []
    for i, row in enumerate(similarity):
        relevant = directions == directions[i]
        top = np.argsort(-row)[: relevant.sum()]
        shares.append(relevant[top].mean())
    return float(np.mean(shares))


def reference_rows(captions: dict[str, list[str]], directions: np.ndarray) -> list[dict]:
    """Chance (a random ranking) and the best possible (identical captions cannot be told apart)."""
    share = {d: np.mean(directions == d) for d in set(directions)}
    chance = {f"{kind}_r1": 1 / len(directions) for kind in KINDS}
    best = {}
    for kind in KINDS:
        counts = collections.Counter(captions[kind])
        best[f"{kind}_r1"] = float(np.mean([1 / counts[c] for c in captions[kind]]))
    chance["direction_precision"] = float(np.mean([share[d] for d in directions]))
    best["direction_precision"] = 1.0
    return [{"model": "chance", **chance}, {"model": "best possible", **best}]


def evaluate(model, test_rows: list[dict]) -> dict:
    """R@1 of a loaded model on synth rows, per caption kind, and direction precision."""
    clips = [decode_video(row["uri"], model.sampling, model.image_size)[1][0].frames for row in test_rows]
    videos = model.encode_clips(clips)
    directions = np.array([row["direction"] for row in test_rows])
    result = {}
    for k, kind in enumerate(KINDS):
        similarity = model.encode_text([row["captions"][k] for row in test_rows]) @ videos.T
        result[f"{kind}_r1"] = text_to_video_metrics(similarity)["R@1"] / 100  # caption i describes video i
        if kind == "direction":
            result["direction_precision"] = direction_precision(similarity, directions)
    return result


def markdown(rows: list[dict]) -> str:
    lines = ["| model | full captions R@1 | direction-only R@1 | direction-only: top-k moving that way |",
             "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['full_r1']:.3f} | {r['direction_r1']:.3f} | {r['direction_precision']:.3f} |"
              for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-videos", type=int, default=400)
    parser.add_argument("--test-videos", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--out", help="working directory (default: a temporary one)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out or scratch)
        train_manifest = synth(out / "train", n=args.train_videos, seed=TRAIN_SEED)
        test_rows = [json.loads(line) for line in synth(out / "test", n=args.test_videos, seed=TEST_SEED).open()]
        captions = {kind: [row["captions"][k] for row in test_rows] for k, kind in enumerate(KINDS)}
        rows = reference_rows(captions, np.array([row["direction"] for row in test_rows]))
        seconds = {}
        for head, (model_name, label) in HEADS.items():
            began = time.perf_counter()
            stats = train(str(train_manifest), str(out / head), init="tiny", head=head, epochs=args.epochs,
                          batch_size=32, lr=1e-3, seed=0, checkpoint_every=args.epochs)
            model = create_model(model_name, checkpoint=stats["checkpoint"], device="cpu")
            rows.append({"model": label, **evaluate(model, test_rows), "final_loss": stats["epoch_loss"][-1]})
            seconds[head] = time.perf_counter() - began
    print(markdown(rows))
    print(json.dumps({"train_videos": args.train_videos, "test_videos": args.test_videos, "epochs": args.epochs,
                      "rows": rows, "seconds": {**seconds, "total": time.perf_counter() - started}}))


if __name__ == "__main__":
    main()

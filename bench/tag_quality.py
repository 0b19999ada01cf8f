"""Zero-shot tagging's quality on sample videos: does a video's best text name its colour, shape, direction?

Usage: python bench/tag_quality.py [--n 120] [--seed 7777] [--model demo] [--work DIR]

`vidx synth` makes N videos with a seed no model was trained or tested on; `vidx index` encodes
them with the model; the vocabulary is every phrase synth captions with (each colour, shape and
direction, and "something moves <direction>"), encoded by `vidx texts`; `vidx tag --top-k 5` tags
every video. A video's colour is right at top-1 when its best text names it, at top-5 when one of
its five best does; chance is the same for texts drawn at random from the vocabulary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from math import comb
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.index import index  # noqa: E402
from encoders.synth import COLOURS, DIRECTIONS, SHAPES, Scene  # noqa: E402
from jobs.synth import synth  # noqa: E402
from jobs.tag import tag  # noqa: E402
from jobs.texts import texts  # noqa: E402
from storage.table.dataset import read_live  # noqa: E402
from storage.schema import TAG_KEY  # noqa: E402

ATTRIBUTES = ("colour", "shape", "direction")
TOP = (1, 5)


def vocabulary() -> list[str]:
    """Every caption synth gives, for every scene it can draw."""
    phrases = {caption for colour in COLOURS for shape in SHAPES for direction in DIRECTIONS
               for caption in Scene("", shape, colour, direction, "black").captions()}
    return sorted(phrases)


def names(text: str, attribute: str, value: str) -> bool:
    """Whether a synth phrase names `value` of `attribute` (direction phrases: "to the left", "up")."""
    words = text.split()
    return value in words if attribute != "direction" else text.endswith(value)


def chance(vocab: list[str], attribute: str, values, top: int) -> float:
    """The accuracy of `top` texts drawn at random, averaged over the attribute's values."""
    rates = []
    for value in values:
        hits = sum(names(text, attribute, value) for text in vocab)
        rates.append(1 - comb(len(vocab) - hits, top) / comb(len(vocab), top))
    return sum(rates) / len(rates)


def accuracy(manifest: Path, tags: list[dict]) -> dict:
    truth = {row["video_id"]: row for row in map(json.loads, manifest.read_text().splitlines())}
    ranked: dict[str, list[str]] = {}
    for row in sorted(tags, key=lambda r: (r["video_id"], r["rank"])):
        ranked.setdefault(row["video_id"], []).append(row["text"])
    return {f"{attribute}@{top}": sum(any(names(text, attribute, truth[video][attribute]) for text in found[:top])
                                      for video, found in ranked.items()) / len(truth)
            for attribute in ATTRIBUTES for top in TOP}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7777, help="a seed no model was trained or tested on")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--work", help="working directory (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="vidx-tag-quality-"))
    manifest = synth(work / "synth", n=args.n, seed=args.seed)
    output = str(work / "index")
    index(str(manifest), output, model=args.model)
    vocab = vocabulary()
    (work / "phrases.txt").write_text("\n".join(vocab) + "\n")
    texts(str(work / "phrases.txt"), output)
    tag(output, "phrases", top_k=max(TOP))
    found = accuracy(manifest, read_live(f"{output}/tags/phrases", TAG_KEY).to_pylist())
    values = {"colour": list(COLOURS), "shape": SHAPES, "direction": list(DIRECTIONS)}
    print(f"{args.n} videos (seed {args.seed}), model {args.model}, {len(vocab)} phrases\n")
    print("| attribute | top-1 | chance | top-5 | chance |\n|---|---|---|---|---|")
    for attribute in ATTRIBUTES:
        cells = [f"{100 * found[f'{attribute}@{top}']:.1f} % | "
                 f"{100 * chance(vocab, attribute, values[attribute], top):.1f} %" for top in TOP]
        print(f"| {attribute} | {' | '.join(cells)} |")
    print(json.dumps({"n": args.n, "seed": args.seed, "model": args.model, "phrases": len(vocab), **found}))


if __name__ == "__main__":
    main()

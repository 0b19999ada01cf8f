"""vidx command line: python -m jobs <command> (also installed as `vidx`)."""

from __future__ import annotations

import argparse
import logging
import sys

from .demo import demo
from .synth import synth


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidx", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("demo", help="encode sample videos and answer a text query, offline")
    p.add_argument("--out", default="vidx-demo", help="working directory for the sample videos")
    p.add_argument("--model", default="tiny", help="model name (default: tiny, random weights)")
    p.add_argument("--query", default="a red circle moves to the left")
    p.add_argument("--n", type=int, default=12, help="number of sample videos")
    p.add_argument("-k", type=int, default=5, help="matches to show")
    p.set_defaults(run=lambda a: demo(out=a.out, model=a.model, query=a.query, n=a.n, k=a.k))

    p = commands.add_parser("synth", help="write procedural sample videos and a manifest")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=lambda a: print(synth(a.out, n=a.n, seed=a.seed)))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

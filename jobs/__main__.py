"""vidx command line: python -m jobs <command> (also installed as `vidx`)."""

from __future__ import annotations

import argparse
import json
import sys

from encoders.config import DEVICES, HEADS, SEEK_MODES
from errors import UserError, exit_code, one_line
from storage.schema import CAPTIONS, MAX_RESULTS, QUERY_FORMATS, VIDEOS, caption_alias

from .log import configure_logging

# Heavy imports (torch, open_clip, Ray, pymilvus) happen inside the commands that need them, so
# `vidx --help` and a filtered `vidx query` start without them.


def add_address_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")


def add_index_options(p: argparse.ArgumentParser) -> None:
    # Flags left out take the index job's own defaults (index_options drops them); the defaults
    # named in the help are checked against the job's constants by tests/test_jobs/test_cli.py.
    p.add_argument("--model", default="clip-meanp", help="clip2video (needs --checkpoint), clip-meanp, tiny")
    p.add_argument("--checkpoint", help="official CLIP2Video checkpoint (pytorch_model.bin.N)")
    p.add_argument("--workers", type=int, default=1, help="embedder actors, each with one model (one GPU each on "
                   "GPU clusters)")
    p.add_argument("--batch-size", type=int, help="videos per encoder call (default 8)")
    p.add_argument("--segment-seconds", type=float, help="one row per segment of this length")
    p.add_argument("--seek", choices=SEEK_MODES,
                   help="exact (default): the paper's frame times; keyframe: the nearest keyframes, far less "
                        "decoding on long GOPs, less accurate (README: Decoding)")
    add_address_option(p)
    p.add_argument("--rows-per-part", type=int,
                   help="rows per Parquet part (default 256): a crash loses at most this much finished work per writer")
    p.add_argument("--device", choices=DEVICES,
                   help="auto (default): the GPUs Ray assigns (a GPU node whose torch sees none is "
                   "refused); cpu: fp32 on CPU wherever the embedder actors land")
    p.add_argument("--shared-dir", action="append", metavar="DIR", help="a local directory every node mounts at "
                   "the same path: --output and videos under it are allowed on a multi-node cluster")
    p.add_argument("--retry-errors", action="store_true", default=None,
                   help="read again videos whose rows are permanent errors (transient ones always are)")


def index_options(a: argparse.Namespace) -> dict:
    return given(model=a.model, checkpoint=a.checkpoint, workers=a.workers, batch_size=a.batch_size,
                 segment_seconds=a.segment_seconds, seek=a.seek, address=a.address, rows_per_part=a.rows_per_part,
                 device=a.device, shared_dirs=a.shared_dir, retry_errors=a.retry_errors)


def given(**options) -> dict:
    """The options a user gave: one left out (None) takes the job's own default."""
    return {name: value for name, value in options.items() if value is not None}


def cmd_demo(a: argparse.Namespace) -> None:
    from .demo import demo

    demo(out=a.out, model=a.model, query=a.query, n=a.n, k=a.k)


def cmd_index(a: argparse.Namespace) -> None:
    from .index import index

    print_json(index(a.manifest, a.output, **index_options(a)))


def cmd_texts(a: argparse.Namespace) -> None:
    from .texts import texts

    print_json(texts(a.input, a.output, name=a.name, model=a.model, checkpoint=a.checkpoint, workers=a.workers,
                     address=a.address, **given(device=a.device)))


def cmd_tag(a: argparse.Namespace) -> None:
    from .tag import tag

    print_json(tag(a.embeddings, a.texts, top_k=a.top_k, min_score=a.min_score, per_segment=a.per_segment,
                   address=a.address))


def cmd_nightly(a: argparse.Namespace) -> None:
    from .nightly import nightly

    print_json(nightly(a.manifest, a.workdir, a.db, **given(keep=a.keep), **index_options(a)))


def cmd_load(a: argparse.Namespace) -> None:
    from .load import load

    print_json(load(a.embeddings, a.db, a.collection))


def cmd_search(a: argparse.Namespace) -> None:
    from .search import format_table, search

    hits = search(a.db, text=a.text, video=a.video, video_id=a.video_id, target=a.target, k=a.k, where=a.where,
                  collection=a.collection)
    print(json.dumps(hits, default=str) if a.json else format_table(hits), flush=True)


def cmd_query(a: argparse.Namespace) -> None:
    from .query import explain_query, formatted, query_table

    if a.explain:
        print_json(explain_query(a.db, a.sql, parse_params(a.param)))
        return
    rows = formatted(query_table(a.db, a.sql, parse_params(a.param)), "json" if a.json else a.format)
    if a.output:
        with open(a.output, "wb") as out:
            out.write(rows)
    else:
        sys.stdout.buffer.write(rows)
        sys.stdout.flush()


def cmd_serve(a: argparse.Namespace) -> None:
    from .serve import serve

    serve(a.db, host=a.host, port=a.port, token=a.token, cache_dir=a.cache_dir, collection=a.collection,
          ray=a.ray, address=a.address, **given(max_upload_mb=a.max_upload_mb, max_in_flight=a.max_in_flight,
                                                 max_queue=a.max_queue, replicas=a.replicas,
                                                 replica_cpus=a.replica_cpus))


def cmd_eval(a: argparse.Namespace) -> None:
    from .evaluation import evaluate

    print_metrics(evaluate(a.embeddings), a.json)


def cmd_train(a: argparse.Namespace) -> None:
    from .train import train

    print_json(train(
        a.manifest, a.output, init=a.init, head=a.head, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
        clip_lr=a.clip_lr, weight_decay=a.weight_decay, seed=a.seed, checkpoint_every=a.checkpoint_every,
        workers=a.workers, use_gpu=a.use_gpu, address=a.address))


def cmd_synth(a: argparse.Namespace) -> None:
    from .synth import synth

    print(synth(a.out, n=a.n, seed=a.seed, **given(gop=a.gop)))


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="vidx.db", help="milvus-lite path (default vidx.db) or http://host:19530")


def add_collection_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--collection", default=VIDEOS, help=f"{what} (default {VIDEOS}); its captions are "
                   f"{caption_alias(VIDEOS)} beside {VIDEOS}, else COLLECTION_{CAPTIONS}")


def add_demo_parser(commands) -> None:
    p = commands.add_parser("demo", help="encode sample videos and answer a text query, offline")
    p.add_argument("--out", default="vidx-demo", help="working directory for the sample videos")
    p.add_argument("--model", default="demo", help="model name (default: demo, trained on sample videos)")
    p.add_argument("--query", default="a red circle moves to the left")
    p.add_argument("--n", type=int, default=12, help="number of sample videos")
    p.add_argument("-k", type=int, default=5, help="matches to show")
    p.set_defaults(run=cmd_demo)


def add_index_parser(commands) -> None:
    p = commands.add_parser("index", help="manifest -> decode -> encode -> Parquet embeddings, on Ray")
    p.add_argument("--manifest", required=True, help="Parquet, CSV or JSONL manifest, or a directory / glob of videos")
    p.add_argument("--output", required=True, help="dataset directory (local or fsspec URL)")
    add_index_options(p)
    p.set_defaults(run=cmd_index)


def add_texts_parser(commands) -> None:
    p = commands.add_parser("texts", help="a text corpus (tags, a taxonomy, sentences) -> the index's text tower "
                                          "-> Parquet, on Ray")
    p.add_argument("--input", required=True, help=".txt (one text per line), or .parquet/.csv/.jsonl with a text "
                                                  "column, optional text_id and metadata columns")
    p.add_argument("--output", required=True, help="the index's --output directory")
    p.add_argument("--name", help="the corpus' name: its collection and tag column (default: the file's name)")
    p.add_argument("--model", help="default: the indexed videos' model (another one is refused)")
    p.add_argument("--checkpoint", help="with --model clip2video: the official checkpoint")
    p.add_argument("--workers", type=int, default=1, help="encoder actors")
    p.add_argument("--device", choices=DEVICES, help="auto (default): the GPUs Ray assigns; cpu: fp32 on CPU")
    add_address_option(p)
    p.set_defaults(run=cmd_texts)


def add_tag_parser(commands) -> None:
    p = commands.add_parser("tag", help="zero-shot tagging: every video's best texts of a corpus -> Parquet, on Ray")
    p.add_argument("--embeddings", required=True, help="an index --output directory")
    p.add_argument("--texts", required=True, help="a corpus NAME (vidx texts) or its directory")
    p.add_argument("--top-k", type=int, default=5, help="texts per video (default 5)")
    p.add_argument("--min-score", type=float, help="keep only texts scoring at least this (cosine similarity)")
    p.add_argument("--per-segment", action="store_true", help="tag each segment, not each video (its best segment)")
    add_address_option(p)
    p.set_defaults(run=cmd_tag)


def add_nightly_parser(commands) -> None:
    p = commands.add_parser("nightly", help="incremental index -> tags -> load -> validate -> alias swap -> retention")
    p.add_argument("--manifest", required=True, help="tonight's manifest: the whole library as it should be served")
    p.add_argument("--workdir", required=True, help="the index dataset kept between nights (local or fsspec URL)")
    add_db_option(p)
    p.add_argument("--keep", type=int, help="collection versions kept per alias (default 2)")
    add_index_options(p)
    p.set_defaults(run=cmd_nightly)


def add_load_parser(commands) -> None:
    p = commands.add_parser("load", help="Parquet embeddings -> a new collection version, validated, alias swapped")
    p.add_argument("--embeddings", required=True, help="an index --output directory")
    add_db_option(p)
    add_collection_option(p, "alias the new version is served under")
    p.set_defaults(run=cmd_load)


def add_search_parser(commands) -> None:
    p = commands.add_parser("search", help="text->video, video->video or video->text top-k")
    add_db_option(p)
    add_collection_option(p, "the served collection to search")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a caption to find videos for")
    query.add_argument("--video", help="a video file or URL to find similar videos (or captions) for")
    query.add_argument("--video-id", help="an indexed video to find similar videos for")
    p.add_argument("--target", default=VIDEOS, help=f"search the videos (default), their {CAPTIONS}, or a corpus NAME "
                                                    "(vidx texts)")
    p.add_argument("-k", type=int, default=10, help=f"results (at most {MAX_RESULTS})")
    p.add_argument("--where", default="", help='Milvus filter, e.g. \'tag == "news" and duration_s > 10\'')
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.set_defaults(run=cmd_search)


def add_query_parser(commands) -> None:
    p = commands.add_parser("query", help="a SQL-like SELECT against the served collections")
    p.add_argument("sql", help="SELECT ... FROM videos|captions|COLLECTION [WHERE ...] [GROUP BY ... [HAVING ...]] "
                               "[ORDER BY similarity(TEXT(..)) DESC | column | aggregate ...] [LIMIT n [OFFSET m]] "
                               "(README: The query dialect)")
    add_db_option(p)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a value for :NAME")
    p.add_argument("--explain", action="store_true",
                   help="print the steps the statement becomes (Milvus or the exact copy, then DuckDB) instead of rows")
    p.add_argument("--format", choices=QUERY_FORMATS, default="table", help="how the rows are written (default table)")
    p.add_argument("--output", help="write the rows to this file (default: standard output)")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.set_defaults(run=cmd_query)


def add_serve_parser(commands) -> None:
    p = commands.add_parser("serve", help="the search page and HTTP JSON API (FastAPI) for search and query")
    add_db_option(p)
    add_collection_option(p, "the collection the page and /search serve")
    p.add_argument("--host", default="127.0.0.1", help="bind address; beyond localhost a token is required")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", help="bearer token clients must send (default: VIDX_TOKEN)")
    p.add_argument("--cache-dir", help="thumbnail cache (default: DB.thumbnails beside a milvus-lite DB, "
                                       "else ~/.cache/vidx/thumbnails)")
    p.add_argument("--max-upload-mb", type=float, help="largest request body, uploaded clips included (default 50)")
    p.add_argument("--max-in-flight", type=int, help="searches and queries worked on at once (default 32, per "
                                                     "replica)")
    p.add_argument("--max-queue", type=int, help="searches and queries waiting for a place; more are answered 503 "
                                                 "with Retry-After (default 32, per replica)")
    p.add_argument("--ray", action="store_true", help="replicas on Ray Serve (needs a Milvus server --db)")
    p.add_argument("--replicas", type=int, help="with --ray: how many (default 2)")
    p.add_argument("--replica-cpus", type=float, help="with --ray: cores per replica (default 1)")
    p.add_argument("--address", help="with --ray: the Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.set_defaults(run=cmd_serve)


def add_eval_parser(commands) -> None:
    p = commands.add_parser("eval", help="R@1/5/10, median and mean rank of an index run against its captions")
    p.add_argument("--embeddings", required=True, help="an index --output directory (whole videos, with captions)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_eval)


def add_train_parser(commands) -> None:
    p = commands.add_parser("train", help="fine-tune CLIP2Video (or meanP) on captioned videos with Ray Train")
    p.add_argument("--manifest", required=True, help="Parquet, CSV or JSONL with uri, video_id, captions")
    p.add_argument("--output", required=True, help="checkpoints (official format), loss.csv, loss.png, stats.json")
    p.add_argument("--init", default="tiny", help="a model name (tiny, demo, clip-meanp...) or an official checkpoint")
    p.add_argument("--head", choices=HEADS, help="train this head on init's CLIP (default: init's)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32, help="videos per step and worker (the contrastive batch)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip-lr", type=float, help="learning rate of CLIP's own weights (default: --lr)")
    p.add_argument("--weight-decay", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints (resume points)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per worker, bf16 autocast")
    add_address_option(p)
    p.set_defaults(run=cmd_train)


def add_synth_parser(commands) -> None:
    p = commands.add_parser("synth", help="write procedural sample videos and a manifest")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gop", type=int, help="keyframe interval in frames (default: x264's, one per clip)")
    p.set_defaults(run=cmd_synth)


COMMANDS = (add_demo_parser, add_index_parser, add_texts_parser, add_tag_parser, add_nightly_parser, add_load_parser,
            add_search_parser, add_query_parser, add_serve_parser, add_eval_parser, add_train_parser, add_synth_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidx", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add_parser in COMMANDS:
        add_parser(commands)
    return parser


def parse_params(pairs: list[str]) -> dict[str, str]:
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--param {pair!r}: expected NAME=VALUE")
    return dict(pair.split("=", 1) for pair in pairs)


def print_metrics(result: dict, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    print(f"{result['n_videos']} videos, {result['n_captions']} captions ({result['path']}, as the paper computes it)")
    for direction in ("t2v", "v2t"):
        print(f"{direction}  " + "  ".join(f"{name} {value:.1f}" for name, value in result[direction].items()))


def print_json(result) -> None:
    """The result as one JSON object on the last line of stdout."""
    print(json.dumps(result, sort_keys=True, default=str), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the job ran (even if some videos failed), 2 when the input was bad, 1 when the
    vector database failed or a check of vidx's own did (errors: classed by what happened)."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        args.run(args)
    except Exception as e:
        code = exit_code(e)
        if code is None:
            raise  # a bug: its traceback is the report
        print(f"vidx {args.command}: error: {one_line(e)}", file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

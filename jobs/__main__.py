"""vidx command line: python -m jobs <command> (also installed as `vidx`).

Each command is a module of this package that declares its options once, as a pydantic model
(`Arguments`: default, range, help, environment variable, command-line spelling), and a `run` that
takes them; the parser below is made from those declarations. Heavy imports (torch, open_clip, Ray,
pymilvus) happen inside the commands that need them, so `vidx --help` and every `vidx COMMAND --help`
start without them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from typing import Literal, Union, get_args, get_origin

from errors import UserError, exit_code, one_line
from storage.options import Options, extra

from .log import configure_logging

# Command -> its module in this package.
COMMANDS = {"demo": "demo", "index": "index", "texts": "texts", "tag": "tag", "duplicates": "duplicates",
            "nightly": "nightly", "load": "load", "rollback": "rollback", "search": "search", "query": "query",
            "serve": "serve", "eval": "evaluation", "train": "train", "synth": "synth"}


def _value_type(annotation) -> object:
    """The annotation without None: `int | None` -> int."""
    if get_origin(annotation) in (Union, types.UnionType):
        values = [a for a in get_args(annotation) if a is not type(None)]
        return values[0] if len(values) == 1 else str
    return annotation


def _argument(name: str, field, options: type[Options]) -> tuple[list[str], dict]:
    """argparse's add_argument for one declared field: its flag (or a positional), help and type. A
    flag left out is absent from the namespace, so the declaration's default applies."""
    spelled, kind = extra(field), _value_type(field.annotation)
    described = field.description or ""
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    if spelled.get("env"):
        described += f" (default: ${spelled['env']})"
    elif default not in (None, False, "", [], {}):
        described += f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
    arguments = {"help": described, "metavar": spelled.get("metavar")}
    if spelled.get("positional"):
        return [name], {**arguments, "metavar": None}
    arguments["default"], arguments["dest"] = argparse.SUPPRESS, name
    if field.is_required():
        arguments["required"] = True
    if kind is bool:
        return [options.flag(name)], {"help": described, "action": "store_true", "default": argparse.SUPPRESS,
                                      "dest": name}
    if get_origin(kind) is Literal:
        arguments["choices"] = get_args(kind)
    elif get_origin(kind) in (list, dict):
        arguments["action"] = "append"
    elif kind in (int, float):
        arguments["type"] = kind
    return [options.flag(name)], arguments


def _pairs(flag: str, given: list[str]) -> dict[str, str]:
    """NAME=VALUE flags (a dict option) as a dict."""
    for pair in given:
        if "=" not in pair:
            raise UserError(f"{flag} {pair!r}: expected NAME=VALUE")
    return dict(pair.split("=", 1) for pair in given)


def add_options(parser: argparse.ArgumentParser, options: type[Options]) -> None:
    for name, field in options.model_fields.items():
        flags, arguments = _argument(name, field, options)
        parser.add_argument(*flags, **arguments)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidx", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command, module in COMMANDS.items():
        door = importlib.import_module(f".{module}", __package__)
        subparser = commands.add_parser(command, help=door.__doc__.splitlines()[0], description=door.__doc__)
        add_options(subparser, door.Arguments)
    return parser


def _arguments(options: type[Options], namespace: argparse.Namespace) -> Options:
    given = {name: value for name, value in vars(namespace).items() if name in options.model_fields}
    for name, value in given.items():
        if get_origin(_value_type(options.model_fields[name].annotation)) is dict:
            given[name] = _pairs(options.flag(name), value)
    return options.of(**given)


def write(answer) -> None:
    """What a command returns, on standard output: bytes as they are, a dict or list as one JSON line
    (the last line), text as it is."""
    if answer is None:
        return
    if isinstance(answer, bytes):
        sys.stdout.buffer.write(answer)
    elif isinstance(answer, (dict, list)):
        print(json.dumps(answer, sort_keys=True, default=str))
    else:
        print(answer)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the job ran (even if some videos failed), 2 when the input was bad, 1 when the
    vector database failed or a check of vidx's own did (errors: classed by what happened)."""
    namespace = build_parser().parse_args(argv)
    configure_logging()
    door = importlib.import_module(f".{COMMANDS[namespace.command]}", __package__)
    try:
        write(door.run(_arguments(door.Arguments, namespace)))
    except Exception as e:
        code = exit_code(e)
        if code is None:
            raise  # a bug: its traceback is the report
        print(f"vidx {namespace.command}: error: {one_line(e)}", file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

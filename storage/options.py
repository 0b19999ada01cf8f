"""Options declared once: a pydantic model per command (or per question), each field with its
default, range, help and, where it has one, its environment variable and command-line spelling.
The CLI builds its flags from the fields (jobs/__main__.py), the HTTP server validates request
bodies with the same models, and the Python functions validate their keywords with `of`.
"""

from __future__ import annotations

import os
from typing import Any, Self

from pydantic import BaseModel, Field, ValidationError, model_validator

from errors import UserError
from storage.schema import CAPTIONS, VIDEOS, caption_alias


def cli(flag: str | None = None, env: str | None = None, positional: bool = False,
        metavar: str | None = None) -> dict:
    """A field's `json_schema_extra`: how the command line spells it (default `--name-with-dashes`),
    the environment variable that gives its value when it is not given, whether it is positional."""
    return {key: value for key, value in {"flag": flag, "env": env, "positional": positional or None,
                                          "metavar": metavar}.items() if value is not None}


def extra(field) -> dict:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


class Options(BaseModel):
    """A command's (or a question's) options. Unset fields with an environment variable take its value."""

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        for name, field in cls.model_fields.items():
            env = extra(field).get("env")
            if values.get(name) is None and env and os.environ.get(env):
                values = {**values, name: os.environ[env]}
        return values

    @classmethod
    def flag(cls, name: str) -> str:
        """How the command line spells field `name`: its flag, or its name for a positional."""
        spelled = extra(cls.model_fields[name])
        if spelled.get("positional"):
            return name.upper()
        return spelled.get("flag") or "--" + name.replace("_", "-")

    @classmethod
    def of(cls, **values) -> Self:
        """The options given as keywords (absent ones take their defaults), checked: a value out of
        range is a UserError naming its flag; a keyword that is no option is a TypeError (a bug)."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{cls.__name__} has no option {unknown[0]!r}")
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise invalid(cls, e) from None


def invalid(options: type[Options], error: ValidationError) -> UserError:
    """The first problem of `error` as one line: the flag, the value given, and what it should be."""
    problem = error.errors()[0]
    name = problem["loc"][0] if problem["loc"] else None
    what = problem["msg"].removeprefix("Value error, ").replace("Input should be", "should be")
    if name not in options.model_fields:
        return UserError(what)
    if problem["type"] == "missing":
        return UserError(f"{options.flag(name)} is required")
    return UserError(f"{options.flag(name)} {problem['input']!r}: {what}")


def db_field():
    """The vector database a command loads or reads: a milvus-lite path, or a Milvus server's URL."""
    return Field("vidx.db", description="milvus-lite path or http://host:19530")


def collection_field(what: str):
    """The alias of the videos a command serves or reads (`vidx load --collection`), and beside it their captions."""
    return Field(VIDEOS, description=f"{what}; its captions are {caption_alias(VIDEOS)} beside {VIDEOS}, else "
                                     f"COLLECTION_{CAPTIONS}")

"""User errors: what the user asked cannot be done, said in one line (CLI exit 2, HTTP 4xx).

An exception is a user error when its class is one of vidx's own: UserError and the classes below
in jobs, and in encoders and storage (which cannot import jobs) ModelConfigError, CheckpointError,
VideoDecodeError, ManifestError, DatasetError, QueryError, VectorStoreError. vidx defines exception
classes only for bad input, so where a class is defined says what it is. Everything else (a
ValueError inside numpy, a KeyError anywhere) is a bug and keeps its traceback.
"""

from __future__ import annotations

VIDX_PACKAGES = ("jobs", "encoders", "storage")


class UserError(ValueError):
    """Bad input; str() says which input and what is wrong. HTTP 400."""

    status = 400


class NotFound(UserError):
    """Names something the served library does not hold (a video, a collection). HTTP 404."""

    status = 404


class TooLarge(UserError):
    """An upload over the server's limit. HTTP 413."""

    status = 413


def _defined_by_vidx(error_type: type) -> bool:
    return error_type.__module__.split(".")[0] in VIDX_PACKAGES


def user_error_status(error: BaseException) -> int | None:
    """The HTTP status that answers `error` when it is a user error; None when it is a bug."""
    return getattr(error, "status", 400) if _defined_by_vidx(type(error)) else None


def one_line(error: BaseException) -> str:
    """The error's message on one line (Milvus and FFmpeg messages may span several)."""
    return " ".join(str(error).split()) or type(error).__name__

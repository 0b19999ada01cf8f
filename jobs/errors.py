"""User errors: what the user asked cannot be done, said in one line (CLI exit 2, HTTP 4xx).

Everything else is a bug and keeps its traceback. An exception is a user error when

- its class is one of vidx's own (defined in jobs, encoders or storage: QueryError, ManifestError,
  CheckpointError, VectorStoreError, VideoDecodeError, the classes below, and any such class a
  module adds: vidx defines exception classes only for bad input), or
- it is a plain ValueError raised by vidx's own code (a bad flag value, say); a ValueError raised
  inside numpy, pyarrow or any other dependency is a bug.

encoders and storage cannot import jobs, so their errors are recognised by where they are defined.
"""

from __future__ import annotations

from pathlib import Path

VIDX_PACKAGES = ("jobs", "encoders", "storage")
_VIDX_DIRS = tuple(Path(__file__).resolve().parents[1] / name for name in VIDX_PACKAGES)


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


def _raised_by_vidx(error: BaseException) -> bool:
    frame = error.__traceback__
    if frame is None:
        return False
    while frame.tb_next is not None:
        frame = frame.tb_next
    path = Path(frame.tb_frame.f_code.co_filename).resolve()
    return any(path.is_relative_to(directory) for directory in _VIDX_DIRS)


def user_error_status(error: BaseException) -> int | None:
    """The HTTP status that answers `error` when it is a user error; None when it is a bug."""
    if _defined_by_vidx(type(error)):
        return getattr(error, "status", 400)
    if type(error) is ValueError and _raised_by_vidx(error):
        return 400
    return None


def one_line(error: BaseException) -> str:
    """The error's message on one line (Milvus and FFmpeg messages may span several)."""
    return " ".join(str(error).split()) or type(error).__name__

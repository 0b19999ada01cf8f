"""vidx's errors, classed by what happened, and the one formatter of a one-line reason.

Every package raises these (or subclasses named for their domain: ManifestError, QueryError...),
so where a class is defined says nothing about what it means; its base does:

- UserError: bad input (a flag, a statement, a file, a manifest). The CLI prints one line and
  exits 2; the server answers 400 (NotFound 404, TooLarge 413).
- Unavailable: a service vidx needs (the vector database) cannot be reached or fails. One line,
  exit 1, HTTP 503: the input may be fine, try again once the service is back.
- IntegrityError: a check of vidx's own failed (a load that does not read back what it wrote).
  One line, exit 1, HTTP 500.

Anything else is a bug and keeps its traceback. A leaf package: it imports nothing of vidx.
"""

from __future__ import annotations

from collections.abc import Iterator

# Characters kept of a reason: an error row or a response stays readable.
MAX_REASON = 300


class UserError(ValueError):
    """Bad input; str() says which input and what is wrong."""

    status = 400


class NotFound(UserError):
    """Names something the served library does not hold (a video, a collection)."""

    status = 404


class TooLarge(UserError):
    """A request body over the server's limit."""

    status = 413


class Unavailable(RuntimeError):
    """A service vidx depends on cannot be reached or failed; the request may succeed later."""

    status = 503


class IntegrityError(RuntimeError):
    """A check of vidx's own failed: what was written does not read back as it should."""

    status = 500


KNOWN = (UserError, Unavailable, IntegrityError)


def http_status(error: BaseException) -> int | None:
    """The status that answers `error`; None for a bug (a 500 with its traceback in the log)."""
    return error.status if isinstance(error, KNOWN) else None


def exit_code(error: BaseException) -> int | None:
    """2 for bad input, 1 for a failure vidx can name; None for a bug (the traceback is the report)."""
    if isinstance(error, UserError):
        return 2
    return 1 if isinstance(error, KNOWN) else None


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error, then what caused it, and so on; each once (some libraries raise an error `from`
    itself)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def one_line(error: BaseException) -> str:
    """The reason on one line, at most MAX_REASON characters. vidx's own errors are their message;
    another library's also name their type ("TimeoutError: ..."). An error that carries an OS or
    FFmpeg strerror is told by it: the file name it appends is already in the row or message."""
    text = getattr(error, "strerror", None) or str(error)
    text = " ".join(str(text).split())
    if not isinstance(error, KNOWN):
        text = f"{type(error).__name__}: {text}".rstrip(": ")
    return text[:MAX_REASON] or type(error).__name__

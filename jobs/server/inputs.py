"""What a request may bring: a bounded body, its fields (a JSON object or a multipart form), clips
uploaded with it, and videos of the served library.

Over HTTP, VIDEO(..) never opens a path or URL a client names: it is a video of the served
library (its video_id, or a uri the collection holds: the stored vector is used, nothing is
opened), or a clip uploaded in the same request (decoded from a temporary file, deleted after).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Collection
from pathlib import Path

from fastapi import Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from errors import NotFound, TooLarge, UserError
from storage.query.engine import Engine


MAX_CLIPS = 4  # files per request
MAX_FIELDS = 64  # form fields per request
SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")  # an upload keeps its file name's extension, nothing else of it


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413, before it is read when its
    Content-Length says so, else as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def too_large(self) -> TooLarge:
        return TooLarge(f"request body over the {self.max_bytes / 2**20:g} MiB limit (vidx serve --max-upload-mb)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(status_code=413, content={"error": str(self.too_large())})
            await response(scope, receive, send)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self.too_large()  # inside the route: answered by the app's user-error handler
            return message

        await self.app(scope, bounded_receive, send)


def is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def json_object(request: Request) -> dict:
    """The members of the JSON object a request's body is (whatever its Content-Type says)."""
    try:
        fields = json.loads(await request.body())
    except ValueError as e:
        raise UserError(f"the request body is not JSON ({e})") from None
    if not isinstance(fields, dict):
        raise UserError("the request body must be a JSON object")
    return fields


class Clips:
    """The clips uploaded with a request, each saved as a file `clipN` in `directory`, with the upload's
    extension when it is a plain one."""

    def __init__(self, directory: Path):
        self.directory, self.paths = directory, set()

    def save(self, upload: UploadFile) -> str:
        suffix = Path(upload.filename or "").suffix
        path = (self.directory / f"clip{len(self.paths)}").with_suffix(suffix if SUFFIX.fullmatch(suffix) else "")
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out)
        if path.stat().st_size == 0:
            raise UserError(f"uploaded clip {upload.filename!r} is empty")
        self.paths.add(str(path))
        return str(path)


@contextlib.asynccontextmanager
async def form_fields(request: Request) -> AsyncIterator[tuple[dict[str, str | UploadFile], Clips]]:
    """A multipart request's fields by name (text, or an UploadFile), at most MAX_FIELDS and MAX_CLIPS
    files (Starlette answers 400 beyond), and the Clips to save its files to, all removed on exit."""
    async with request.form(max_files=MAX_CLIPS, max_fields=MAX_FIELDS) as form:
        with tempfile.TemporaryDirectory(prefix="vidx-upload-") as directory:
            yield dict(form), Clips(Path(directory))


class LibraryVideos:
    """A server's VIDEO(..): a video of the library, or a clip uploaded with the request."""

    def __init__(self, engine: Engine, uploads: Collection[str], collection: str):
        """`uploads`: the paths of the request's saved clips."""
        self.engine, self.uploads, self.collection = engine, set(uploads), collection

    def __call__(self, value: str) -> tuple[str, str]:
        if value in self.uploads:
            return "VIDEO", value
        rows = self.engine.rows_with(self.collection, {"video_id": value, "uri": value}, ["video_id"])
        if not rows:
            raise NotFound(f"VIDEO({value!r}) is not a video of the served library: give a video_id or uri it "
                           "holds, or upload a clip")
        return "ID", rows[0]["video_id"]

"""Uploads into the media store (a local folder served under `/media/...`)."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from realtime import models as m
from realtime.api.base import Call, Endpoint, Reply
from realtime.errors import BodyTooLargeError, MalformedJsonError

SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
UPLOADS = "uploads"


def counting(receive: Receive, limit: int) -> Receive:
    """A `receive` that refuses the request once its body passes `limit` bytes."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise BodyTooLargeError(f"the upload passed the limit of {limit} bytes")
        return message
    return wrapped


def store(media_dir: Path, upload: Any) -> str:
    """Copy the upload into the media folder; the name is new, only a plain suffix is kept."""
    suffix = Path(upload.filename or "").suffix.lower()
    name = f"{uuid.uuid4().hex}{suffix if SAFE_SUFFIX.match(suffix) else ''}"
    folder = media_dir / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("wb") as out:
        upload.file.seek(0)
        shutil.copyfileobj(upload.file, out, 1024 * 1024)
    return f"/media/{UPLOADS}/{name}"


async def upload(call: Call) -> Reply:
    limit = call.config.max_upload_bytes
    length = call.request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise BodyTooLargeError(f"the upload is {length} bytes; the limit is {limit}")
    if not call.request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise MalformedJsonError("send the file as multipart/form-data in a `file` field",
                                 code="multipart_required")
    request = Request(call.request.scope, counting(call.request.receive, limit))
    try:
        form = await request.form(max_files=1, max_fields=20)
    except BodyTooLargeError:
        raise
    except Exception as error:  # the multipart parser's own errors: bad input, not ours
        raise MalformedJsonError(f"unreadable multipart body: {error}",
                                 code="malformed_multipart") from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise MalformedJsonError("the form needs a `file` field holding a file",
                                     code="file_required")
        location = await call.run(store, call.config.media_dir, file)
    finally:
        await form.close()
    return Reply({"location": location, "thumbnail_url": location}, 201)


ENDPOINTS = [
    Endpoint("POST", "/api/uploads", upload, "Upload a file (multipart `file`); answers its "
             "media location", "media", response=m.Upload, status=201, multipart=True),
]

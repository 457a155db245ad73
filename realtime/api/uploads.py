"""Uploads into the media store (a local folder served under `/media/...`).

An upload is an image or a video, decided by decoding its bytes (`sniffing.inspect`:
Pillow, PyAV; a declared type must agree); anything else is refused with 422 and
nothing is stored. It is stored under the suffix of what it is, with a WebP
thumbnail (at most 256 px on the long side) beside it; the answer holds both
locations, signed on the way out like every media location the API answers.

A user's uploads count against a daily quota (`upload_quota_bytes` per UTC day;
`DARKROOM_UPLOAD_QUOTA_BYTES`): the bytes are reserved in `edge_upload_usage`
(one row per user and day, in the studio's schema, shared by every server
process) in one atomic upsert before the file is stored, and given back if storing
fails. The service key is a trusted caller and is not counted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from realtime import models as m
from realtime.api.base import Call, Endpoint, Reply
from realtime.api.sniffing import Media, inspect
from realtime.errors import (
    BodyTooLargeError,
    EdgeError,
    MalformedJsonError,
    UploadOverQuotaError,
    UploadQuotaExceededError,
)

UPLOADS = "uploads"
# Multipart framing around the file (boundaries, part headers, other small fields):
# a body this much over what the quota has left may still hold a file that fits.
FRAMING_SLACK = 64 * 1024


def counting(
    receive: Receive, limit: int, refuse: Callable[[int], EdgeError] | None = None
) -> Receive:
    """A `receive` that refuses the request once its body passes `limit` bytes."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise (
                refuse(seen)
                if refuse
                else BodyTooLargeError(f"the upload passed the limit of {limit} bytes")
            )
        return message

    return wrapped


# ---- the daily quota ---------------------------------------------------------------
USAGE_TABLE = """CREATE TABLE IF NOT EXISTS edge_upload_usage (
    user_id text NOT NULL, day date NOT NULL, bytes bigint NOT NULL,
    PRIMARY KEY (user_id, day))"""


def _with_table(conn: psycopg.Connection[Any], fn: Callable[[], Any]) -> Any:
    """`fn()`, creating the usage table first if it is missing (two processes may race)."""
    try:
        with conn.transaction():
            return fn()
    except psycopg.errors.UndefinedTable:
        with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
            conn.execute(USAGE_TABLE)  # another process created it meanwhile
        with conn.transaction():
            return fn()


def used_today(conn: psycopg.Connection[Any], user_id: str, day: date) -> int:
    def read() -> int:
        row = conn.execute(
            "SELECT bytes FROM edge_upload_usage WHERE user_id = %s AND day = %s", (user_id, day)
        ).fetchone()
        return int(row["bytes"]) if row else 0

    return int(_with_table(conn, read))


def reserve(
    conn: psycopg.Connection[Any], user_id: str, day: date, size: int, quota: int
) -> int | None:
    """Adds `size` to the user's bytes of `day` if the total stays within `quota`: the new
    total, or None (nothing added). Older days of that user are forgotten."""

    def upsert() -> int | None:
        conn.execute(
            "DELETE FROM edge_upload_usage WHERE user_id = %s AND day < %s", (user_id, day)
        )
        row = conn.execute(
            "INSERT INTO edge_upload_usage AS u (user_id, day, bytes) VALUES (%s, %s, %s) "
            "ON CONFLICT (user_id, day) DO UPDATE SET bytes = u.bytes + excluded.bytes "
            "WHERE u.bytes + excluded.bytes <= %s RETURNING bytes",
            (user_id, day, size, quota),
        ).fetchone()
        return int(row["bytes"]) if row else None

    result: int | None = _with_table(conn, upsert)
    return result


def give_back(conn: psycopg.Connection[Any], user_id: str, day: date, size: int) -> None:
    conn.execute(
        "UPDATE edge_upload_usage SET bytes = greatest(bytes - %s, 0) "
        "WHERE user_id = %s AND day = %s",
        (size, user_id, day),
    )


class Quota:
    """One upload's view of its user's quota for the day it started."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.quota = call.config.upload_quota_bytes
        principal = call.principal
        self.user_id = None if principal.is_service or not self.quota else principal.user_id
        self.day = datetime.now(UTC).date()

    @property
    def counted(self) -> bool:
        return self.user_id is not None

    def retry_after(self) -> int:
        midnight = datetime.combine(self.day + timedelta(days=1), datetime.min.time(), UTC)
        return max(1, int((midnight - datetime.now(UTC)).total_seconds()) + 1)

    def exceeded(self, used: int, size: int, exact: bool = True) -> EdgeError:
        what = (
            f"this upload of {size} bytes"
            if exact
            else f"this upload (at least {size} bytes of body)"
        )
        if exact and size > self.quota:
            return UploadOverQuotaError(
                f"{what} is larger than the whole daily upload quota of {self.quota} bytes "
                "(DARKROOM_UPLOAD_QUOTA_BYTES)",
                quota_bytes=self.quota,
                upload_bytes=size,
            )
        retry = self.retry_after()
        return UploadQuotaExceededError(
            f"user {self.user_id} has uploaded {used} of their {self.quota} bytes on "
            f"{self.day.isoformat()} (UTC); {what} would pass the daily upload quota "
            f"(DARKROOM_UPLOAD_QUOTA_BYTES); it resets in {retry} s",
            headers={"Retry-After": str(retry)},
            quota_bytes=self.quota,
            used_bytes=used,
            upload_bytes=size,
        )

    async def used(self) -> int:
        assert self.user_id is not None
        return int(
            await self.call.run(self.call.state.views.query, used_today, self.user_id, self.day)
        )

    async def take(self, size: int) -> None:
        """Reserves `size` bytes, or refuses with 413 (larger than the quota) or 429."""
        if self.user_id is None:
            return
        if size > self.quota:
            raise self.exceeded(await self.used(), size)
        total = await self.call.run(
            self.call.state.views.query, reserve, self.user_id, self.day, size, self.quota
        )
        if total is None:
            raise self.exceeded(await self.used(), size)

    async def give_back(self, size: int) -> None:
        if self.user_id is not None:
            await self.call.run(
                self.call.state.views.query, give_back, self.user_id, self.day, size
            )


def store(media_dir: Path, upload: Any, media: Media) -> tuple[str, str]:
    """Copy the upload and write its thumbnail into the media folder under new names; the
    suffix is the one of what the bytes are (not the client's file name). The locations
    of both; if the thumbnail cannot be written, the file is removed again."""
    folder = media_dir / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    name, thumb = f"{uuid.uuid4().hex}{media.suffix}", f"{uuid.uuid4().hex}.webp"
    _write(folder / name, lambda out: _copy(upload, out))
    try:
        _write(folder / thumb, lambda out: out.write(media.thumbnail))
    except BaseException:
        (folder / name).unlink(missing_ok=True)
        raise
    return f"/media/{UPLOADS}/{name}", f"/media/{UPLOADS}/{thumb}"


def _copy(upload: Any, out: Any) -> None:
    upload.file.seek(0)
    shutil.copyfileobj(upload.file, out, 1024 * 1024)


def _write(path: Path, fill: Callable[[Any], Any]) -> None:
    """Temp file + rename: `/media` never serves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as out:
            fill(out)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def inspected(upload: UploadFile, max_pixels: int) -> Media:
    return inspect(upload.file, upload.content_type, upload.filename or "file", max_pixels)


async def upload(call: Call) -> Reply:
    limit = call.config.max_upload_bytes
    length = call.request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise BodyTooLargeError(f"the upload is {length} bytes; the limit is {limit}")
    if not call.request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise MalformedJsonError(
            "send the file as multipart/form-data in a `file` field", code="multipart_required"
        )
    quota = Quota(call)
    refuse = None
    if quota.counted:
        # Refused before the body is read when the day's quota cannot hold it.
        used = await quota.used()
        room = quota.quota - used + FRAMING_SLACK
        at_least = max(int(length) - FRAMING_SLACK, 1) if length and length.isdigit() else 1
        if at_least > quota.quota:
            raise quota.exceeded(used, at_least)
        if used >= quota.quota or (length and length.isdigit() and int(length) > room):
            raise quota.exceeded(used, at_least, exact=False)
        if room < limit:
            limit, refuse = (
                room,
                (lambda seen: quota.exceeded(used, seen - FRAMING_SLACK, exact=False)),
            )
    request = Request(call.request.scope, counting(call.request.receive, limit, refuse))
    try:
        form = await request.form(max_files=1, max_fields=20)
    except EdgeError:  # too large, over the quota
        raise
    except Exception as error:  # the multipart parser's own errors: bad input, not ours
        raise MalformedJsonError(
            f"unreadable multipart body: {error}", code="malformed_multipart"
        ) from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise MalformedJsonError(
                "the form needs a `file` field holding a file", code="file_required"
            )
        size = file.size if file.size is not None else _size_of(file)
        await quota.take(size)
        try:
            # Decoded before anything is stored: bytes that are no image or video, or not
            # what they are declared to be, are refused with 422 and leave no file.
            media = await call.run(inspected, file, call.config.upload_max_pixels)
            location, thumbnail = await call.run(store, call.config.media_dir, file, media)
        except BaseException:
            await quota.give_back(size)
            raise
    finally:
        await form.close()
    return Reply(
        {
            "location": location,
            "thumbnail_url": thumbnail,
            "content_type": media.content_type,
            "type": media.kind,
            "width": media.width,
            "height": media.height,
        },
        201,
    )


def _size_of(file: UploadFile) -> int:
    file.file.seek(0, 2)
    return int(file.file.tell())


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/uploads",
        upload,
        "Upload an image or a video (multipart `file`, "
        "decoded to check it); answers its signed URL and a thumbnail's",
        "media",
        response=m.Upload,
        status=201,
        multipart=True,
    ),
]

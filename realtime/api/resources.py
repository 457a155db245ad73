"""Resources: a user's LoRAs (seed 002's `resources` and `lora_files`).

`POST /api/resources` takes a multipart `file` (and an optional `name` field): the bytes
must be a safetensors LoRA state dict (`domain.loras.inspect_lora` reads its header and
checks it against the size; anything else is 422 `invalid_lora` and nothing is stored),
at most `max_upload_bytes` and counted in the daily upload quota like any upload. The
file is kept in the media folder (`/media/uploads/<id>`). `POST /api/resources/url`
registers a URL instead: nothing is fetched then; a worker fetches it (bounded, like any
input URL) each time a task naming it runs. A resource is its owner's alone: another
user's answers 404, in listings, reads, deletes and in a task's `loras`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from domain.errors import ResourceNotFoundError
from domain.loras import inspect_lora
from domain.services.written import ResourceWritten
from realtime import models as m
from realtime.api import reads
from realtime.api.base import Call, Endpoint, Reply, written
from realtime.api.uploads import UPLOADS, Quota, counting
from realtime.errors import EdgeError, MalformedJsonError

# Stored LoRAs: /media/uploads/<32 hex>, no suffix (the media stores' location pattern).
STORED = re.compile(rf"/media/{UPLOADS}/[0-9a-f]{{32}}")
OUT_FIELDS = ("id", "type", "name", "location", "url", "size", "sha256", "metadata", "created_at")


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in OUT_FIELDS}


def keep(media_dir: Path, upload: UploadFile) -> tuple[str, str]:
    """Copy the file into the media folder (temp file + rename); its location and
    SHA-256."""
    folder = media_dir / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    digest = hashlib.sha256()
    tmp = folder / f".{name}.tmp"
    try:
        with tmp.open("wb") as out:
            upload.file.seek(0)
            while chunk := upload.file.read(1024 * 1024):
                digest.update(chunk)
                out.write(chunk)
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    return f"/media/{UPLOADS}/{name}", digest.hexdigest()


def discard(media_dir: Path, location: str | None) -> None:
    """Remove a stored LoRA's file (a location that is no stored LoRA's is left alone)."""
    if location and STORED.fullmatch(location):
        (media_dir / location.removeprefix("/media/")).unlink(missing_ok=True)


def _size_of(upload: UploadFile) -> int:
    upload.file.seek(0, 2)
    return int(upload.file.tell())


async def upload_resource(call: Call) -> Reply:
    if not call.request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise MalformedJsonError(
            "send the LoRA as multipart/form-data in a `file` field", code="multipart_required"
        )
    limit = call.config.max_upload_bytes
    request = Request(call.request.scope, counting(call.request.receive, limit))
    try:
        form = await request.form(max_files=1, max_fields=20)
    except EdgeError:
        raise
    except Exception as error:  # the multipart parser's own errors: bad input
        raise MalformedJsonError(
            f"unreadable multipart body: {error}", code="malformed_multipart"
        ) from None
    try:
        file, name = form.get("file"), form.get("name")
        if not isinstance(file, UploadFile):
            raise MalformedJsonError(
                "the form needs a `file` field holding a file", code="file_required"
            )
        if not isinstance(name, str) or not name.strip():
            name = Path(file.filename or "").stem or "LoRA"
        size = _size_of(file)
        facts = await call.run(inspect_lora, file.file, size)  # 422 before anything is kept
        quota = Quota(call)
        await quota.take(size)
        location = None
        try:
            location, sha256 = await call.run(keep, call.config.media_dir, file)
            result = await call.run(
                call.studio.add_resource,
                call.principal.user_id,
                "lora",
                name,
                location=location,
                size=size,
                sha256=sha256,
                metadata=facts,
                meta=call.meta(),
            )
        except BaseException:
            await quota.give_back(size)
            await call.run(discard, call.config.media_dir, location)
            raise
    finally:
        await form.close()
    return await _created(call, result)


async def register_url(call: Call) -> Reply:
    body: m.ResourceUrlCreate = call.body
    result = await call.run(
        call.studio.add_resource,
        call.principal.user_id,
        body.type,
        body.name,
        url=body.url,
        meta=call.meta(),
    )
    return await _created(call, result)


async def _created(call: Call, result: ResourceWritten) -> Reply:
    resource = await call.run(call.studio.resource, result.id, call.principal.user_id)
    return written(
        result,
        201,
        type=resource.kind,
        name=resource.name,
        location=resource.location,
        url=resource.url,
        size=resource.size,
        sha256=resource.sha256,
        metadata=resource.metadata,
        created_at=resource.created_at.isoformat(),
    )


async def list_resources(call: Call) -> Reply:
    from projections.views.resources import resources_page

    query: m.ResourceList = call.query
    page = await reads.read(
        call,
        ("resources",),
        partial(resources_page, limit=query.limit, cursor=query.cursor),
        call.principal.user_id,
    )
    return Reply({"items": [_out(r) for r in page["items"]], "next_cursor": page["next_cursor"]})


async def get_resource(call: Call) -> Reply:
    from projections.views.resources import resource_row

    ident = call.path["id"]
    row = await reads.read(call, ("resources",), resource_row, ident)
    if row is None or row["deleted"] or row["owner_id"] != call.principal.user_id:
        raise ResourceNotFoundError(ident)
    return Reply(_out(row))


async def delete_resource(call: Call) -> Reply:
    """The resource leaves listings and can no longer be named by new tasks; a stored
    file is removed (a queued task naming it fails with media_not_found when it runs)."""
    result = await call.run(
        call.studio.delete_resource, call.path["id"], call.principal.user_id, meta=call.meta()
    )
    with contextlib.suppress(OSError):  # the event stands; a stray file is only space
        await call.run(discard, call.config.media_dir, result.location)
    return written(result, deleted=True)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/resources",
        upload_resource,
        "Upload a LoRA (multipart `file`: a "
        "safetensors LoRA state dict, checked; optional `name` field)",
        "resources",
        response=m.ResourceOut,
        status=201,
        multipart=True,
        auth="user",
    ),
    Endpoint(
        "POST",
        "/api/resources/url",
        register_url,
        "Register a LoRA by URL (fetched by the worker when a task names it, never here)",
        "resources",
        body=m.ResourceUrlCreate,
        response=m.ResourceOut,
        status=201,
        auth="user",
    ),
    Endpoint(
        "GET",
        "/api/resources",
        list_resources,
        "The caller's LoRAs, newest first, in keyset pages",
        "resources",
        query=m.ResourceList,
        response=m.ResourcePage,
        auth="user",
    ),
    Endpoint(
        "GET",
        "/api/resources/{id}",
        get_resource,
        "One of the caller's LoRAs",
        "resources",
        response=m.ResourceOut,
        auth="user",
    ),
    Endpoint(
        "DELETE",
        "/api/resources/{id}",
        delete_resource,
        "Delete one of the caller's LoRAs (its stored file too)",
        "resources",
        response=m.Written,
        auth="user",
    ),
]

"""A request's input, read and checked before a handler sees it: the body within its
byte limit, parsed as JSON and validated (a body strictly, as sent; a query string's
text converted), NUL refused wherever it would be stored, path ids parsed as UUIDs, and
the hash an idempotency key is bound to. `dumps` is the JSON encoder answers use.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import ClientDisconnect, Request

from realtime.errors import (
    BodyTooLargeError,
    FieldsInvalidError,
    MalformedJsonError,
    invalid_field,
    invalid_fields,
)

M = TypeVar("M", bound=BaseModel)
UUID_ADAPTER = TypeAdapter(UUID)


def _default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data: Any) -> bytes:
    return json.dumps(data, default=_default, separators=(",", ":")).encode()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise BodyTooLargeError(f"the body is {length} bytes; the limit is {limit}")
    # The ASGI messages read directly (what `request.stream()` does, without an async
    # generator per request); kept as the request's body for a later `request.body()`.
    chunks, size, receive = [], 0, request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"the body passed the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = request._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body


async def parse_body(request: Request, model: type[M], limit: int, optional: bool) -> M:
    return validate(model, await read_json(request, limit, optional), "body")


async def read_json(request: Request, limit: int, optional: bool) -> Any:
    """The body as parsed JSON (`{}` for an empty optional body), before validation."""
    return parse_json(await read_body(request, limit), optional)


def parse_json(raw: bytes, optional: bool) -> Any:
    """A body's bytes as parsed JSON (`{}` for an empty optional body), before validation."""
    if not raw.strip():
        data: Any = {} if optional else None
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise MalformedJsonError(f"the body is not valid JSON: {error}") from None
    if data is None and not optional:
        raise MalformedJsonError("this route needs a JSON object body", code="missing_body")
    return data


def request_hash(path: dict[str, Any], query: dict[str, str], body: Any) -> str:
    """What an idempotency key is bound to besides its route: sha256 of the path
    parameters, query and parsed body as canonical JSON (sorted keys, no spaces), so
    whitespace and key order do not matter and any other value does."""
    canonical = json.dumps(
        {"path": path, "query": query, "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def nul_path(data: Any, where: str) -> str | None:
    """Where a string (or key) holds NUL, which PostgreSQL text and jsonb cannot store."""
    if isinstance(data, str):
        return where if "\x00" in data else None
    if isinstance(data, dict):
        for key, value in data.items():
            found = f"{where}.{key}" if "\x00" in key else nul_path(value, f"{where}.{key}")
            if found:
                return found
    elif isinstance(data, list):
        for i, value in enumerate(data):
            if found := nul_path(value, f"{where}.{i}"):
                return found
    return None


def validate(model: type[M], data: Any, where: str) -> M:
    """A body (`where` "body..."), as JSON, takes its types as sent (strict: `0` is not a
    boolean, `"1"` not an integer, as the document says); a query string's values are text,
    so they are converted."""
    try:
        if not where.startswith("body"):
            return model.model_validate(data)
        body = model.model_validate_json(dumps(integral(data)), strict=True)
    except PydanticValidationError as error:
        raise invalid_fields(error, where) from None
    # NUL (which PostgreSQL text and jsonb cannot hold) in anything the body keeps; a field
    # the model ignores is dropped unread, whatever it holds.
    if found := nul_path(body.model_dump(mode="json"), where):
        raise nul_error(found)
    return body


def integral(data: Any) -> Any:
    """JSON numbers as JSON Schema counts them: `306.0` is an integer (and still a number)."""
    if isinstance(data, float) and data.is_integer() and abs(data) < 2**53:
        return int(data)
    if isinstance(data, dict):
        return {key: integral(value) for key, value in data.items()}
    if isinstance(data, list):
        return [integral(value) for value in data]
    return data


def no_nul(data: dict[str, Any], where: str) -> dict[str, Any]:
    if found := nul_path(data, where):
        raise nul_error(found)
    return data


def nul_error(path: str) -> FieldsInvalidError:
    return invalid_field(
        path,
        "NUL (\\u0000) is not allowed",
        "nul_character",
        summary=f"{path}: the NUL character (\\u0000) is not allowed",
    )


def parse_path(request: Request, names: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in names:
        raw = request.path_params[name]
        if name.endswith("id") and name != "worker_id":
            try:
                values[name] = UUID_ADAPTER.validate_python(raw)
            except PydanticValidationError as error:
                raise invalid_fields(error, f"path.{name}") from None
        else:
            values[name] = raw
    return values

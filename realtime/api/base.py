"""The one shape every HTTP endpoint has: declared, authenticated, validated, off-loop.

An `Endpoint` names its method, path, body/query models and response schema;
`route()` turns it into a Starlette `Route` that authenticates the caller,
reads a bounded body, validates it, and hands the handler a `Call`. The same
declarations feed the OpenAPI document (`realtime.openapi`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import anyio.to_thread
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime.auth import Principal
from realtime.errors import (
    BodyTooLargeError,
    FieldsInvalidError,
    ForbiddenError,
    MalformedJsonError,
    invalid_fields,
)

if TYPE_CHECKING:
    from domain.studio import Studio
    from realtime.config import EdgeConfig

POSITION_HEADER = "X-Darkroom-Position"
T = TypeVar("T")
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


class Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


@dataclass
class Reply:
    """A handler's answer: JSON body, status, and the position a command wrote."""

    body: Any = None
    status: int = 200
    position: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        headers = dict(self.headers)
        if self.position is not None:
            headers[POSITION_HEADER] = str(self.position)
        if self.status == 204:
            return Response(status_code=204, headers=headers)
        return Json(self.body, status_code=self.status, headers=headers)


def written(result: dict[str, Any], status: int = 200, **more: Any) -> Reply:
    """The reply to a command: its ids (and `position`), header included."""
    body = {**result, **more}
    return Reply(body, status, body.get("position"))


@dataclass
class Call:
    """What a handler gets: the request, its caller and its validated inputs."""

    request: Request
    principal: Principal
    body: Any
    query: Any
    path: dict[str, Any]

    @property
    def state(self) -> Any:
        return self.request.app.state

    @property
    def studio(self) -> Studio:
        return self.state.studio  # type: ignore[no-any-return]

    @property
    def config(self) -> EdgeConfig:
        return self.state.config  # type: ignore[no-any-return]

    @property
    def user(self) -> str | None:
        """The `user_id` domain verbs take: None (trusted) for the service key."""
        return self.principal.scope

    def meta(self, **kw: Any) -> Any:
        return self.principal.meta(self.request, **kw)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking domain or database call, off the event loop."""
        limiter = getattr(self.state, "command_limiter", None)
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=limiter)


Handler = Callable[[Call], Awaitable[Reply | Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    auth: str = "any"  # "none" | "any" | "service" | "user" | "worker" (service key or PAT)
    errors: tuple[int, ...] = ()
    multipart: bool = False
    other_statuses: dict[int, Any] = field(default_factory=dict)
    body_optional: bool = False

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1].split(":")[0] for part in self.path.split("/")
                if part.startswith("{")]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise BodyTooLargeError(f"the body is {length} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"the body passed the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: Request, model: type[M], limit: int, optional: bool) -> M:
    raw = await read_body(request, limit)
    if not raw.strip():
        data: Any = {} if optional else None
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise MalformedJsonError(f"the body is not valid JSON: {error}") from None
    if data is None and not optional:
        raise MalformedJsonError("this route needs a JSON object body", code="missing_body")
    if raw and b"\\u0000" in raw and (where := nul_path(data, "body")):
        raise FieldsInvalidError(f"{where}: the NUL character (\\u0000) is not allowed",
                                 errors=[{"path": where, "loc": where.split("."),
                                          "message": "NUL (\\u0000) is not allowed",
                                          "type": "nul_character"}])
    return validate(model, data, "body")


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
    try:
        return model.model_validate(data)
    except PydanticValidationError as error:
        raise invalid_fields(error, where) from None


def no_nul(data: dict[str, Any], where: str) -> dict[str, Any]:
    if found := nul_path(data, where):
        raise FieldsInvalidError(f"{found}: the NUL character is not allowed", errors=[
            {"path": found, "loc": found.split("."), "message": "NUL is not allowed",
             "type": "nul_character"}])
    return data


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


def route(endpoint: Endpoint) -> Route:
    async def asgi(request: Request) -> Response:
        principal = await authorise(request, endpoint)
        path = parse_path(request, endpoint.path_params)
        query = validate(endpoint.query, no_nul(dict(request.query_params), "query"),
                         "query") if endpoint.query else None
        body = None
        if endpoint.body is not None:
            config = request.app.state.config
            body = await parse_body(request, endpoint.body, config.max_body_bytes,
                                    endpoint.body_optional)
        reply = await endpoint.handler(Call(request, principal, body, query, path))
        return reply.response() if isinstance(reply, Reply) else reply

    return Route(endpoint.path, asgi, methods=[endpoint.method], name=f"{endpoint.method} "
                 f"{endpoint.path}")


async def authorise(request: Request, endpoint: Endpoint) -> Principal:
    if endpoint.auth == "none":
        return Principal("anonymous", None)
    principal: Principal = await request.app.state.auth.authenticate(request)
    if endpoint.auth == "service" and not principal.is_service:
        raise ForbiddenError("this route takes the service key", code="service_only")
    if endpoint.auth == "user":
        principal.require_user()
    if endpoint.auth == "worker" and principal.via not in ("service", "pat"):
        raise ForbiddenError("worker routes take the service key or a personal access token",
                             code="worker_credentials_required")
    return principal

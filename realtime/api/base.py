"""The one shape every HTTP endpoint has: declared, authenticated, validated, off-loop.

An `Endpoint` names its method, path, body/query models and response schema;
`route()` turns it into a Starlette `Route` that authenticates the caller,
reads a bounded body, validates it, and hands the handler a `Call`. The same
declarations feed the OpenAPI document (`realtime.openapi`).

`resources()` groups routes by path into one `Resource` each, so that every path
answers `OPTIONS` (204 with `Allow`) and a wrong method with 405 and the full
`Allow` (every method any route registers for that path), and a path with a
literal segment is never shadowed by a `{param}` route of the same shape
(`/api/tasks/cancel-pending` over `/api/tasks/{id}`): literal segments win,
leftmost first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import anyio.to_thread
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette._utils import get_route_path
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from realtime.api.media import strip_all
from realtime.auth import Principal
from realtime.errors import (
    BodyTooLargeError,
    FieldsInvalidError,
    ForbiddenError,
    MalformedJsonError,
    MethodNotAllowedError,
    invalid_field,
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
    route: str | None = None  # "PATCH /api/generations/{id}"
    request_hash: str | None = None  # with an idempotency key: see `request_hash()`

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
        """The command's metadata; an idempotency key is bound to this route and request,
        and the credential goes along (workers are registered to it)."""
        meta = self.principal.meta(self.request, **kw)
        credential = (
            "service"
            if self.principal.is_service
            else f"user:{self.principal.user_id}"
            if self.principal.user_id
            else None
        )
        return replace(
            meta, route=self.route, request_hash=self.request_hash, credential=credential
        )

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
        return [part[1:-1].split(":")[0] for part in self.path.split("/") if part.startswith("{")]


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
    return validate(model, await read_json(request, limit, optional), "body")


async def read_json(request: Request, limit: int, optional: bool) -> Any:
    """The body as parsed JSON (`{}` for an empty optional body), before validation."""
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


def route(endpoint: Endpoint) -> Route:
    """One endpoint as a Starlette `Route` (group them with `resources()`)."""

    async def asgi(request: Request) -> Response:
        principal = await authorise(request, endpoint)
        path = parse_path(request, endpoint.path_params)
        query = (
            validate(endpoint.query, no_nul(dict(request.query_params), "query"), "query")
            if endpoint.query
            else None
        )
        body = data = None
        if endpoint.body is not None:
            config = request.app.state.config
            # A media URL the API gave out comes back as its bare location.
            data = strip_all(
                await read_json(request, config.max_body_bytes, endpoint.body_optional)
            )
            body = validate(endpoint.body, data, "body")
        # A key may come as the header or, for task creation, in the body.
        keyed = "idempotency-key" in request.headers or (
            isinstance(data, dict) and bool(data.get("idempotency_key"))
        )
        fingerprint = request_hash(path, dict(request.query_params), data) if keyed else None
        reply = await endpoint.handler(
            Call(
                request,
                principal,
                body,
                query,
                path,
                f"{endpoint.method} {endpoint.path}",
                fingerprint,
            )
        )
        response = reply.response() if isinstance(reply, Reply) else reply
        if isinstance(reply, Reply):  # media locations leave as signed URLs
            response = request.app.state.media_urls.signed_response(response)
        # Read-your-own-writes: the position is the principal's before the answer leaves.
        if (wrote := response.headers.get(POSITION_HEADER)) and response.status_code < 400:
            await request.app.state.sessions.remember(principal, int(wrote))
        return response

    return Route(
        endpoint.path, asgi, methods=[endpoint.method], name=f"{endpoint.method} {endpoint.path}"
    )


async def authorise(request: Request, endpoint: Endpoint) -> Principal:
    if endpoint.auth == "none":
        return Principal("anonymous", None)
    principal: Principal = await request.app.state.auth.authenticate(request)
    request.state.actor = principal.actor  # for the access log (realtime.observe)
    if endpoint.auth == "service" and not principal.is_service:
        raise ForbiddenError("this route takes the service key", code="service_only")
    if endpoint.auth == "user":
        principal.require_user()
    if endpoint.auth == "worker" and principal.via not in ("service", "pat"):
        raise ForbiddenError(
            "worker routes take the service key or a personal access token",
            code="worker_credentials_required",
        )
    return principal


# ---- resources: one route per path, every method of it ------------------------------
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _segments(path: str) -> list[str | None]:
    """A path's segments, None for a `{param}` one."""
    return [None if part.startswith("{") else part for part in path.strip("/").split("/")]


def shape(path: str) -> str:
    """The path with its parameters unnamed: two templates of one shape match the same paths."""
    return "/" + "/".join("{}" if part is None else part for part in _segments(path))


def shadows(literal: str, general: str) -> bool:
    """Whether `literal` takes precedence over `general` for the paths both match: same
    length, equal where both are literal, and at the first segment where one is a
    parameter and the other is not, `literal` is the literal one."""
    mine, theirs = _segments(literal), _segments(general)
    if len(mine) != len(theirs) or any(":path" in p for p in (literal, general)):
        return False
    pairs = list(zip(mine, theirs, strict=True))
    if any(a is not None and b is not None and a != b for a, b in pairs):
        return False
    first = next(((a, b) for a, b in pairs if (a is None) != (b is None)), None)
    return first is not None and first[0] is not None


def allow_header(methods: Iterable[str]) -> str:
    order = {m: i for i, m in enumerate(HTTP_METHODS)}
    return ", ".join(sorted(set(methods), key=lambda m: (order.get(m, len(order)), m)))


class Resource(BaseRoute):
    """Every route of one path: dispatches on the method, answers `OPTIONS` itself (204,
    `Allow`) and any other method with 405 and the full `Allow`; matches nothing when a
    more literal resource (`shadowed_by`) matches the path."""

    def __init__(self, path: str, apps: dict[str, ASGIApp], name: str | None = None) -> None:
        self.path = path
        self.name = name or path
        self.apps = dict(apps)
        if "GET" in self.apps and "HEAD" not in self.apps:
            self.apps["HEAD"] = self.apps["GET"]
        self.methods = {*self.apps, "OPTIONS"}
        self.allow = allow_header(self.methods)
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)
        self.shadowed_by: list[re.Pattern[str]] = []

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        route_path = get_route_path(scope)
        found = self.path_regex.match(route_path)
        if not found or any(r.match(route_path) for r in self.shadowed_by):
            return Match.NONE, {}
        params = {
            key: self.param_convertors[key].convert(value)
            for key, value in found.groupdict().items()
        }
        path_params = {**scope.get("path_params", {}), **params}
        return Match.FULL, {"endpoint": self, "path_params": path_params}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        if name != self.name:
            raise NoMatchFound(name, path_params)
        return URLPath(self.path_format.format(**path_params), protocol="http")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        app = self.apps.get(method)
        if app is not None:
            await app(scope, receive, send)
        elif method == "OPTIONS":
            await Response(status_code=204, headers={"Allow": self.allow})(scope, receive, send)
        else:
            raise MethodNotAllowedError(
                f"{method} is not allowed on {scope['path']}; allowed: {self.allow}",
                headers={"Allow": self.allow},
                allowed=self.allow.split(", "),
            )

    def __repr__(self) -> str:
        return f"Resource({self.path!r}, {self.allow})"


def resources(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """HTTP `Route`s grouped into one `Resource` per path (in first-seen order); other
    routes (websockets, mounts) pass through. Two templates of one shape with different
    parameter names would make the answer depend on order: refused."""
    grouped: dict[str, dict[str, ASGIApp]] = {}
    names: dict[str, str] = {}
    out: list[BaseRoute | str] = []
    for item in routes:
        if not isinstance(item, Route):
            out.append(item)
            continue
        key = shape(item.path)
        if key in names and names[key] != item.path:
            raise ValueError(f"{item.path} and {names[key]} match the same paths")
        if key not in grouped:
            grouped[key], names[key] = {}, item.path
            out.append(key)
        for method in item.methods or HTTP_METHODS:
            if method in grouped[key]:
                if method == "HEAD":  # Starlette adds HEAD to every GET route
                    continue
                raise ValueError(f"{method} {item.path} is declared twice")
            grouped[key][method] = item.app
    built = {key: Resource(names[key], apps) for key, apps in grouped.items()}
    for resource in built.values():
        resource.shadowed_by = [
            other.path_regex
            for other in built.values()
            if other is not resource and shadows(other.path, resource.path)
        ]
    return [built[item] if isinstance(item, str) else item for item in out]


def read_only(app: ASGIApp) -> ASGIApp:
    """An ASGI app (static files) behind GET/HEAD: `OPTIONS` answered, anything else 405."""
    allow = allow_header(("GET", "HEAD", "OPTIONS"))

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            if scope["method"] == "OPTIONS":
                await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)
                return
            raise MethodNotAllowedError(
                f"{scope['method']} is not allowed on {scope['path']}; allowed: {allow}",
                headers={"Allow": allow},
                allowed=allow.split(", "),
            )
        await app(scope, receive, send)

    return guarded

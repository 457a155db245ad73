"""The one shape every HTTP endpoint has: declared, authenticated, validated, off-loop.

An `Endpoint` names its method, path, body/query models and response schema;
`route()` turns it into a Starlette `Route` that authenticates the caller,
reads a bounded body, validates it, and hands the handler a `Call`. The same
declarations feed the OpenAPI document (`realtime.openapi`). Reading and validating
a request's input is `realtime.api.inputs`; grouping routes by path, `realtime.api.routing`.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from domain.services.written import Written, to_json
from realtime.api.inputs import (
    dumps,
    no_nul,
    parse_json,
    parse_path,
    read_body,
    request_hash,
    validate,
)
from realtime.api.media import strip_all
from realtime.auth import Principal
from realtime.errors import ForbiddenError, ShuttingDownError

if TYPE_CHECKING:
    from domain.studio import Studio
    from realtime.config import EdgeConfig

POSITION_HEADER = "X-Darkroom-Position"
POSITION_BYTES = POSITION_HEADER.lower().encode()
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)

    @classmethod
    def of(cls, content: Any, status: int, position: int | None) -> Json:
        """`Json(content, status, {POSITION_HEADER: position})`, its header list built
        directly (the same headers, in the same order)."""
        response = cls.__new__(cls)
        response.status_code, response.background = status, None
        response.body = body = dumps(content)
        response.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ]
        if position is not None:
            response.raw_headers.insert(0, (POSITION_BYTES, str(position).encode()))
        return response


@dataclass
class Reply:
    """A handler's answer: JSON body, status, and the position a command wrote."""

    body: Any = None
    status: int = 200
    position: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        if not self.headers and self.status != 204:
            return Json.of(self.body, self.status, self.position)
        headers = dict(self.headers)
        if self.position is not None:
            headers[POSITION_HEADER] = str(self.position)
        if self.status == 204:
            return Response(status_code=204, headers=headers)
        return Json(self.body, status_code=self.status, headers=headers)


def written(result: Written | dict[str, Any], status: int = 200, **more: Any) -> Reply:
    """The reply to a command: its ids (and `position`), header included."""
    fields = result.as_json() if isinstance(result, Written) else result
    body = {**fields, **{k: to_json(v) for k, v in more.items()}}
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
        credential = (
            "service"
            if self.principal.is_service
            else f"user:{self.principal.user_id}"
            if self.principal.user_id
            else None
        )
        return self.principal.meta(
            self.request,
            **kw,
            route=self.route,
            request_hash=self.request_hash,
            credential=credential,
        )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking domain or database call, off the event loop, on the app's command
        threads (`command_executor`, `command_threads` of them): a burst queues in the
        executor, where a thread that finishes a call takes the next without being woken,
        instead of each call waiting for a limiter slot on the loop and then waking an
        idle thread (anyio's `to_thread`: measured 15 % more server CPU per command in
        bench/api.py, docs/BENCHMARKS.md, issue 17). The call sees the caller's context
        variables, as under anyio."""
        call = partial(contextvars.copy_context().run, fn, *args, **kwargs)
        executor = getattr(self.state, "command_executor", None)
        if executor is None:
            limiter = getattr(self.state, "command_limiter", None)
            return await anyio.to_thread.run_sync(call, limiter=limiter)
        try:
            future = asyncio.get_running_loop().run_in_executor(executor, call)
        except RuntimeError:  # its threads were stopped: the server is shutting down
            raise shutting_down(fn) from None
        try:
            return await future
        except asyncio.CancelledError:
            # Still queued when the threads stopped (`cancel_futures`): not run, and
            # answered so, unless this request itself was cancelled.
            task = asyncio.current_task()
            if future.cancelled() and task is not None and not task.cancelling():
                raise shutting_down(fn) from None
            raise


def shutting_down(fn: Callable[..., Any]) -> ShuttingDownError:
    name = getattr(fn, "__name__", type(fn).__name__)
    return ShuttingDownError(
        f"the server is shutting down: {name} was not run; retry",
        headers={"Retry-After": "1"},
    )


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


class Served:
    """An endpoint's answer as a plain ASGI app. Starlette's `request_response` would wrap
    each call in a second exception-handling layer (and its `send`); the app's own
    `ExceptionMiddleware` already maps every exception with the same handlers."""

    def __init__(self, answer: Callable[[Request], Awaitable[Response]]) -> None:
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.answer(Request(scope, receive, send))
        await response(scope, receive, send)


def route(endpoint: Endpoint) -> Route:
    """One endpoint as a Starlette `Route` (group them with `resources()`)."""

    # What is the same for every request of the route, computed once.
    path_params, name = endpoint.path_params, f"{endpoint.method} {endpoint.path}"

    async def asgi(request: Request) -> Response:
        principal = await authorise(request, endpoint)
        path = parse_path(request, path_params)
        query = (
            validate(endpoint.query, no_nul(dict(request.query_params), "query"), "query")
            if endpoint.query
            else None
        )
        body = data = None
        key_header = "idempotency-key" in request.headers
        if endpoint.body is not None:
            raw = await read_body(request, request.app.state.config.max_body_bytes)
            body, data = body_input(endpoint.body, raw, endpoint.body_optional, key_header)
        # A key may come as the header or, for task creation, in the body.
        keyed = key_header or (isinstance(data, dict) and bool(data.get("idempotency_key")))
        fingerprint = request_hash(path, dict(request.query_params), data) if keyed else None
        reply = await endpoint.handler(
            Call(
                request,
                principal,
                body,
                query,
                path,
                name,
                fingerprint,
            )
        )
        if isinstance(reply, Reply):  # media locations leave as signed URLs
            response = request.app.state.media_urls.signed_response(reply.response())
            wrote = reply.position
        else:
            response = reply
            wrote = None
        if wrote is None and (header := response.headers.get(POSITION_HEADER)):
            wrote = int(header)
        # Read-your-own-writes: the position is the principal's before the answer leaves.
        if wrote and response.status_code < 400:
            await request.app.state.sessions.remember(principal, wrote)
        return response

    return Route(
        endpoint.path,
        Served(asgi),
        methods=[endpoint.method],
        name=name,
    )


# A body validated straight from its bytes when they can mean nothing else than what the
# full path (parse, strip signed media URLs, integral floats, re-encode, validate, NUL
# check) would validate: ASCII with no escape (so no NUL, no hidden `/media/` URL), no
# NUL byte, no number with a fraction or exponent (a value after `:`, `[` or `,`; the
# same text inside a string only sends the body the full way), no signed URL's `?exp=`.
FRACTION = re.compile(rb"[:\[,]\s*-?[0-9]+[.eE]")


def plain(raw: bytes) -> bool:
    return (
        bool(raw)
        and raw.isascii()
        and b"\\" not in raw
        and b"\x00" not in raw
        and b"?exp=" not in raw
        and not FRACTION.search(raw)
    )


def body_input(model: type[M], raw: bytes, optional: bool, key_header: bool) -> tuple[M, Any]:
    """The validated body and its parsed JSON (what an idempotency key's hash reads): the
    JSON only when the request is keyed by header or its body may name a key."""
    if plain(raw):
        try:
            body = model.model_validate_json(raw, strict=True)
        except PydanticValidationError:
            pass  # the full path answers it, as it always has
        else:
            named = key_header or b"idempotency_key" in raw
            return body, json.loads(raw) if named else None
    # A media URL the API gave out comes back as its bare location.
    data = strip_all(parse_json(raw, optional))
    return validate(model, data, "body"), data


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

"""Every HTTP request observed once: its correlation id, its metrics, one log line.

`Observed(app, routes)` is a plain ASGI middleware around the router:

- correlation id: the request's `X-Correlation-Id` (its first 200 characters) or a new
  UUID, put in the request's state before any route runs (`Principal.meta` gives it to
  the command, so its events carry it: `darkroom history` finds the request) and echoed
  as `X-Correlation-Id` on the answer, errors included;
- metrics (`realtime.metrics`): `darkroom_http_requests_total{method,route,status}` and
  `darkroom_http_request_duration_seconds{method,route}`, where `route` is the matched
  route's template (`/api/shots/{id}`, `/media/{path}`), never the raw path; every path
  that no route matched shares the label `unmatched`;
- the access log: one record on the `darkroom.access` logger per request (method, route,
  path without its query, status, duration_ms, actor, correlation_id), made only when
  that logger is enabled at INFO (`DARKROOM_LOG_FORMAT=json`: darkroom/logs.py). Its
  arguments are one dict, so `darkroom.redact` cleans every value when the record is made.

Websocket and lifespan scopes pass through untouched (the hub counts its own).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.routing import Mount

from realtime.ids import new_correlation
from realtime.metrics import HTTP, UNMATCHED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

CORRELATION_HEADER = b"x-correlation-id"
MAX_CORRELATION = 200
ACCESS = logging.getLogger("darkroom.access")
ACCESS_LINE = (
    "%(method)s %(route)s %(status)s %(duration_ms)sms actor=%(actor)s "
    "correlation_id=%(correlation_id)s"
)


def correlation_of(scope: Scope) -> str:
    """The caller's correlation id, or a new one."""
    for name, value in scope["headers"]:
        if name == CORRELATION_HEADER:
            given = value.decode("latin-1").strip()[:MAX_CORRELATION]
            if given:
                return given
    return new_correlation()


class Observed:
    """See the module docstring. `routes`: the app's routes, for the templates of mounts."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.mounts = {id(r.app): f"{r.path}/{{path}}" for r in routes if isinstance(r, Mount)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        correlation = correlation_of(scope)
        scope.setdefault("state", {})["correlation_id"] = correlation
        echoed = (CORRELATION_HEADER, correlation.encode("latin-1"))
        status = 500  # unless an answer starts: an exception nobody turned into one

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            self.observe(scope, status, time.perf_counter() - started)

    def route_of(self, scope: Scope) -> str:
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        template = getattr(endpoint, "path", None)  # a `Resource`: every API path
        if isinstance(template, str):
            return template
        return self.mounts.get(id(endpoint), UNMATCHED)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = self.route_of(scope)
        HTTP.observe(scope["method"], route, status, seconds)
        if ACCESS.isEnabledFor(logging.INFO):
            state: dict[str, Any] = scope["state"]
            ACCESS.info(
                ACCESS_LINE,
                {
                    "method": scope["method"],
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "actor": state.get("actor"),
                    "correlation_id": state["correlation_id"],
                },
            )

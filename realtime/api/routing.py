"""One route per path, every method of it: `resources()` groups routes by path into one
`Resource` each, so that every path answers `OPTIONS` (204 with `Allow`) and a wrong
method with 405 and the full `Allow` (every method any route registers for that path),
and a path with a literal segment is never shadowed by a `{param}` route of the same
shape (`/api/tasks/cancel-pending` over `/api/tasks/{id}`): literal segments win,
leftmost first. `read_only` guards a static app the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from starlette._utils import get_route_path
from starlette.datastructures import URLPath
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route, Router, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from realtime.errors import MethodNotAllowedError

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
        # The router asks every resource in turn: most are told apart by the literal text
        # before their first parameter, without running their pattern.
        self.prefix = path.split("{", 1)[0]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        route_path = get_route_path(scope)
        if not route_path.startswith(self.prefix):
            return Match.NONE, {}
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


def key_of(path: str) -> tuple[str, ...]:
    """A request path's first two segments: `/api/shots/1/x` -> ("api", "shots")."""
    return tuple(path.split("/", 3)[1:3])


def literal_key(route: BaseRoute) -> tuple[str, ...] | None:
    """The key every path a resource matches has, if its template fixes it (a literal
    path, or one whose first two segments come before any parameter); None: any path."""
    if not isinstance(route, Resource):
        return None
    if "{" not in route.path:
        return key_of(route.path)
    complete = route.prefix.split("/")[1:-1]  # the segments a "/" closes before the first {
    return tuple(complete[:2]) if len(complete) >= 2 else None


class Routes(Router):
    """A Router that asks, of an HTTP request, only the routes that can match its path: the
    resources filed under its first two segments and every route no key fixes, in their
    order. The first that matches in full is the one a scan of every route finds (the
    others cannot match); with none, the full scan runs (partial matches, slash
    redirects, 404), as Starlette's."""

    def __init__(self, routes: Sequence[BaseRoute], **kw: Any) -> None:
        super().__init__(routes, **kw)
        self._indexed: tuple[int, dict[tuple[str, ...], list[BaseRoute]], list[BaseRoute]]
        self._indexed = (-1, {}, [])

    def candidates(self, path: str) -> list[BaseRoute]:
        count, by_key, general = self._indexed
        if count != len(self.routes):  # built once the routes are all there
            keys = [literal_key(r) for r in self.routes]
            general = [r for r, k in zip(self.routes, keys, strict=True) if k is None]
            by_key = {
                key: [r for r, k in zip(self.routes, keys, strict=True) if k in (None, key)]
                for key in {k for k in keys if k is not None}
            }
            self._indexed = (len(self.routes), by_key, general)
        return by_key.get(key_of(path), general)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.candidates(get_route_path(scope)):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.setdefault("router", self)
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)


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

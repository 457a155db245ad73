"""HTTP semantics over the whole route table, through a real server process.

Every path the app routes answers `OPTIONS` with its `Allow`, a method none of its
routes takes with 405 and the full `Allow` (every method any route declares for
that path), and a literal segment is never shadowed by a `{id}` route. The table is
read from the app itself, so a new route is covered without touching this file.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from realtime.api import ENDPOINTS
from realtime.api.base import route
from realtime.api.routing import Resource, allow_header, resources, shadows, shape
from realtime.app import create_app
from realtime.config import EdgeConfig
from tests.realtime.api_harness import Server, error_of, server

__all__ = ["server"]

TRIED = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND")


def route_table(tmp_path: Path) -> list[Resource]:
    """The app's own routes (no lifespan runs: nothing is connected)."""
    config = EdgeConfig(
        conninfo="",
        schema="unused",
        build_studio=lambda: None,  # type: ignore[arg-type,return-value]
        media_dir=tmp_path / "media",
    )
    return [r for r in create_app(config).routes if isinstance(r, Resource)]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> list[Resource]:
    return route_table(tmp_path_factory.mktemp("routes"))


def declared() -> dict[str, set[str]]:
    """Every method the endpoint declarations give each path (HEAD with GET, OPTIONS)."""
    methods: dict[str, set[str]] = {}
    for endpoint in ENDPOINTS:
        methods.setdefault(endpoint.path, {"OPTIONS"}).add(endpoint.method)
        if endpoint.method == "GET":
            methods[endpoint.path].add("HEAD")
    return methods


def concrete(path: str) -> str:
    """The template with every parameter filled (a fresh UUID: never a literal segment)."""
    return "/".join(str(uuid.uuid4()) if part.startswith("{") else part for part in path.split("/"))


def test_every_declared_endpoint_is_one_resource_of_the_table(table: list[Resource]) -> None:
    by_path = {r.path: r for r in table}
    for path, methods in declared().items():
        assert path in by_path, path
        assert by_path[path].methods == methods, path
    assert {"/health", "/openapi.json"} <= set(by_path)
    assert len({shape(r.path) for r in table}) == len(table)


def test_each_path_answers_options_with_its_full_allow(
    server: Server, table: list[Resource]
) -> None:
    anonymous = server.client()
    for resource in table:
        answer = anonymous.options(concrete(resource.path))
        assert answer.status_code == 204, (resource.path, answer.status_code, answer.text)
        assert set(answer.headers["allow"].split(", ")) == resource.methods, resource.path
    assert anonymous.options("/media/anything.png").headers["allow"] == "GET, HEAD, OPTIONS"


def test_a_method_no_route_of_the_path_takes_is_405_with_the_full_allow(
    server: Server, table: list[Resource]
) -> None:
    user = server.user()
    expected = declared()
    seen = 0
    for resource in table:
        path = concrete(resource.path)
        allowed = expected.get(resource.path, resource.methods)
        for method in TRIED:
            if method in allowed:
                continue
            answer = user.request(method, path)
            assert answer.status_code == 405, (method, resource.path, answer.text)
            assert set(answer.headers["allow"].split(", ")) == allowed, (method, resource.path)
            if method != "HEAD":
                body = error_of(answer, 405)
                assert body["code"] == "method_not_allowed"
                assert method in body["message"] and path in body["message"]
            seen += 1
    assert seen > len(table)
    assert user.post("/media/x.png").headers["allow"] == "GET, HEAD, OPTIONS"


def test_a_method_the_path_takes_reaches_its_endpoint(
    server: Server, table: list[Resource]
) -> None:
    """Without credentials every authenticated endpoint answers 401: the request reached
    the endpoint the path declares (a shadowing `{id}` route would answer 422 or 405)."""
    anonymous = server.client()
    auth = {(e.method, e.path): e.auth for e in ENDPOINTS}
    for resource in table:
        for method in sorted(resource.methods - {"OPTIONS", "HEAD"}):
            answer = anonymous.request(method, concrete(resource.path))
            if auth.get((method, resource.path), "none") == "none":
                assert answer.status_code not in (404, 405), (method, resource.path)
            else:
                assert answer.status_code == 401, (method, resource.path, answer.text)


def test_literal_segments_are_never_shadowed_by_a_parameter(
    server: Server, table: list[Resource]
) -> None:
    user = server.user()
    literals = [r for r in table if any(shadows(r.path, o.path) for o in table)]
    assert "/api/tasks/cancel-pending" in {r.path for r in literals}
    for resource in literals:
        path = concrete(resource.path)
        for method in TRIED:
            if method in resource.methods:
                continue
            answer = user.request(method, path)
            assert answer.status_code == 405, (method, path, answer.status_code)
            assert set(answer.headers["allow"].split(", ")) == resource.methods
    body = error_of(user.get("/api/tasks/cancel-pending"), 405)
    assert body["allowed"] == ["POST", "OPTIONS"]


def test_shadowing_prefers_the_leftmost_literal_segment() -> None:
    assert shadows("/a/lit", "/a/{id}")
    assert not shadows("/a/{id}", "/a/lit")
    assert shadows("/a/lit/{x}", "/a/{id}/b")
    assert not shadows("/a/{id}/b", "/a/lit/{x}")
    assert not shadows("/a/lit", "/a/other")
    assert not shadows("/a/lit/b", "/a/{id}")
    assert allow_header(["POST", "OPTIONS", "GET", "HEAD"]) == "GET, HEAD, POST, OPTIONS"


def test_two_templates_of_one_shape_or_one_method_declared_twice_are_refused() -> None:
    one = next(e for e in ENDPOINTS if e.path == "/api/projects/{id}")
    clash = type(one)(one.method, "/api/projects/{project_id}", one.handler, "", "")
    with pytest.raises(ValueError, match="match the same paths"):
        resources([route(one), route(clash)])
    with pytest.raises(ValueError, match="declared twice"):
        resources([route(one), route(one)])


def test_head_answers_like_get_without_a_body(server: Server) -> None:
    answer = httpx.head(f"{server.base_url}/health", timeout=10)
    assert answer.status_code == 200 and answer.content == b""

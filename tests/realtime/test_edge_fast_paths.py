"""The edge's shortcuts answer as the long way does: a body validated straight from its
bytes gives the model (and the JSON an idempotency key hashes) the full path gives, and
the router's index finds, for every path, the route a scan of every route finds."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.routing import Match, Router

from realtime import models as m
from realtime.api.base import body_input, plain
from realtime.api.inputs import parse_json, validate
from realtime.api.media import strip_all
from realtime.api.routing import Routes
from realtime.app import create_app
from realtime.config import EdgeConfig
from realtime.errors import EdgeError

PROJECT = str(uuid.uuid4())
BODIES = [
    {"project_id": PROJECT, "location": "/media/a.png"},
    {"project_id": PROJECT, "location": "/media/a.png", "params": {"seed": 306.0, "w": 1.5}},
    {"project_id": PROJECT, "location": "/media/a.png?exp=1&sig=abc"},
    {"project_id": PROJECT, "location": "/media/a.png", "name": "caf\u00e9"},
    {"project_id": PROJECT, "location": "/media/a.png", "name": "a\u0000b"},
    {"project_id": PROJECT, "location": "/media/a.png", "params": {"k": "3e4f 1.5"}},
    {"project_id": PROJECT, "location": "/media/a.png", "with_position": 1},
    {"project_id": "not a uuid", "location": "/media/a.png"},
    {"projectId": PROJECT, "location": "/media/a.png", "idempotency_key": "k1"},
    [1, 2],
    None,
]


def the_long_way(model: type[BaseModel], raw: bytes) -> tuple[Any, Any]:
    data = strip_all(parse_json(raw, False))
    return validate(model, data, "body"), data


def outcome(fn: Any, *args: Any) -> Any:
    try:
        body, data = fn(*args)
    except EdgeError as error:
        return type(error).__name__, error.status, error.code, error.message
    # As text: 306 and 306.0 are equal numbers but not the same JSON.
    return json.dumps(body.model_dump(mode="json")), json.dumps(data)


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("spacing", [(",", ":"), (", ", ": ")])
def test_a_body_validated_from_its_bytes_is_what_the_full_path_validates(
    body: Any, spacing: tuple[str, str]
) -> None:
    raw = json.dumps(body, separators=spacing).encode()
    the_long_answer = outcome(the_long_way, m.GenerationCreate, raw)
    assert outcome(body_input, m.GenerationCreate, raw, False, True) == the_long_answer


def test_a_duplicated_key_counts_its_last_value_both_ways() -> None:
    raw = f'{{"project_id":"{PROJECT}","location":"/media/a","location":"/media/b"}}'.encode()
    assert plain(raw)
    assert body_input(m.GenerationCreate, raw, False, False)[0].location == "/media/b"
    assert the_long_way(m.GenerationCreate, raw)[0].location == "/media/b"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1.0}',
        b'{"a":[1,2e5]}',
        b'{"a" :\n -3E2}',
        b'{"a":"\\u0000"}',
        b'{"a":"\\/media\\/x?exp=1"}',
        b'{"a":"/media/x?exp=1&sig=y"}',
        '{"a":"é"}'.encode(),
        b"",
    ],
)
def test_only_bytes_that_cannot_mean_anything_else_skip_the_full_path(raw: bytes) -> None:
    assert not plain(raw)


def test_a_body_that_names_no_key_is_not_parsed_twice() -> None:
    raw = json.dumps({"project_id": PROJECT, "location": "/media/a.png"}).encode()
    assert body_input(m.GenerationCreate, raw, False, False)[1] is None
    assert body_input(m.GenerationCreate, raw, False, True)[1] == json.loads(raw)


def first_full_match(routes: list[Any], method: str, path: str) -> Any:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "path_params": {}}
    return next((r for r in routes if r.matches(scope)[0] is Match.FULL), None)


def test_the_router_index_finds_the_route_a_full_scan_finds(tmp_path: Path) -> None:
    config = EdgeConfig(
        conninfo="",
        schema="unused",
        build_studio=lambda: None,  # type: ignore[arg-type,return-value]
        media_dir=tmp_path / "media",
    )
    app = create_app(config)
    router = app.router
    assert isinstance(router, Routes) and isinstance(router, Router)
    ident = str(uuid.uuid4())
    paths = {
        r.path.replace("{path:path}", "a/b.png").replace("{id}", ident)
        for r in router.routes
        if hasattr(r, "path")
    }
    paths |= {
        "/",
        "/nope",
        "/api",
        "/api/",
        "/api/nope/x",
        f"/api/generations/{ident}/",
        "/media/x.png",
        "/console/",
        "/ws",
        "/api/tasks/cancel-pending",
    }
    assert len(paths) > 40
    for path in sorted(paths):
        scanned = first_full_match(router.routes, "GET", path)
        indexed = first_full_match(router.candidates(path), "GET", path)
        assert indexed is scanned, path

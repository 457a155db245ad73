"""`/metrics`, `/health/live`, `/health/ready` and correlation ids, on a real server
(`darkroom.wiring.build_app`: the API, the hub and the projections in one process)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from darkroom.database import Database, create_schema, drop_schema
from darkroom.wiring import build_studio
from realtime.auth import issue_jwt
from realtime.health import DatabaseState, StateSource, read_state, ready
from realtime.metrics import METRIC_NAMES, metrics
from tests.realtime.api_harness import (
    JWT_SECRET,
    Server,
    ok,
    server,
    start_server,
    stop_server,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

__all__ = ["server"]  # the harness's fixture: one server for the module


def scrape(server: Server) -> tuple[set[str], Samples]:
    """(family names as exposed, every sample by name and labels)."""
    answer = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def test_metrics_expose_every_documented_family_and_the_database_gauges(server: Server) -> None:
    ok(server.user().post("/api/projects", json={"name": "metrics"}), 201)
    # The database gauges need a connection: on a box whose PostgreSQL is out of them
    # (other test runs), a scrape may say darkroom_database_up 0; the next one reads.
    scraped = until(
        lambda: (got := scrape(server)) and value(got[1], "darkroom_database_up") == 1 and got
    )
    assert scraped, "no scrape read the database within 10 s"
    names, samples = scraped
    assert set(METRIC_NAMES) <= names
    head = value(samples, "darkroom_events_head_position")
    assert head >= 1
    views = {
        dict(labels)["view"] for name, labels in samples if name == "darkroom_projection_position"
    }
    assert {"gallery", "projects", "tasks"} <= views
    for view in views:
        lag = value(samples, "darkroom_projection_lag_events", view=view)
        assert lag == max(head - value(samples, "darkroom_projection_position", view=view), 0)


def test_request_counters_move_with_traffic_labelled_by_route_template(server: Server) -> None:
    client = server.user()
    missing = [str(uuid.uuid4()) for _ in range(3)]
    _, before = scrape(server)
    # 404, or 504 when a loaded box keeps the read waiting for the user's own first write
    answered = Counter(
        str(client.get(f"/api/projects/{project}").status_code) for project in missing
    )
    assert client.get("/no/such/path").status_code == 404
    _, after = scrape(server)
    for status, count in answered.items():
        key = {"method": "GET", "route": "/api/projects/{id}", "status": status}
        assert (
            value(after, "darkroom_http_requests_total", **key)
            - value(before, "darkroom_http_requests_total", **key)
            == count
        )
    timed = {"method": "GET", "route": "/api/projects/{id}"}
    assert (
        value(after, "darkroom_http_request_duration_seconds_count", **timed)
        - value(before, "darkroom_http_request_duration_seconds_count", **timed)
        == 3
    )
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert (
        value(after, "darkroom_http_requests_total", **unmatched)
        - value(before, "darkroom_http_requests_total", **unmatched)
        == 1
    )
    routes = {dict(labels).get("route") for _, labels in after}
    assert not any(project in str(route) for route in routes for project in missing)
    assert "/no/such/path" not in routes


def test_websocket_metrics_count_connections_changes_sent_and_closes_by_code(
    server: Server,
) -> None:
    user = str(uuid.uuid4())
    client = server.client(issue_jwt(JWT_SECRET, user))
    project = ok(client.post("/api/projects", json={"name": "before"}), 201)["id"]
    ws_url = server.base_url.replace("http", "ws", 1) + "/ws"
    _, before = scrape(server)

    async def session() -> Samples:
        async with connect(f"{ws_url}?token={issue_jwt(JWT_SECRET, user)}") as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(json.dumps({"type": "subscribe", "topic": f"project:{project}"}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            ok(
                await asyncio.to_thread(
                    client.put, f"/api/projects/{project}", json={"name": "after"}
                )
            )
            while json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] != "change":
                pass
            _, during = await asyncio.to_thread(scrape, server)
        async with connect(f"{ws_url}?token=not-a-token") as bad:
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(bad.recv(), 20)
            assert bad.close_code == 4401
        return during

    during = asyncio.run(session())
    assert value(during, "darkroom_ws_connections") >= 1
    assert value(during, "darkroom_ws_subscriptions") >= 1
    assert value(during, "darkroom_ws_changes_sent_total") > value(
        before, "darkroom_ws_changes_sent_total"
    )

    def closed() -> Samples | None:
        _, after = scrape(server)
        moved = all(
            value(after, "darkroom_ws_closed_total", code=code)
            > value(before, "darkroom_ws_closed_total", code=code)
            for code in ("4401", "client")
        )
        return after if moved else None

    after = until(closed)
    assert after, "the 4401 close and the client's close were not both counted"
    assert value(after, "darkroom_ws_connections") == value(before, "darkroom_ws_connections")


def test_a_request_answers_with_the_correlation_id_its_events_carry(
    server: Server, database: Database, schema: str
) -> None:
    client = server.user()
    given = f"obs-{uuid.uuid4()}"
    made = client.post(
        "/api/projects", json={"name": "traced"}, headers={"X-Correlation-Id": given}
    )
    assert made.headers["x-correlation-id"] == given
    fresh = client.post("/api/projects", json={"name": "traced too"})
    generated = fresh.headers["x-correlation-id"]
    assert uuid.UUID(generated)
    assert client.get("/no/such/path").headers["x-correlation-id"]  # errors carry one too
    studio = build_studio(database, schema, pool_size=1)
    try:
        assert {r["correlation_id"] for r in studio.history(ok(made, 201)["id"])} == {given}
        assert {r["correlation_id"] for r in studio.history(ok(fresh, 201)["id"])} == {generated}
    finally:
        studio.close()


def test_the_process_is_live_and_ready_once_its_views_are_near_the_head(server: Server) -> None:
    live = httpx.get(f"{server.base_url}/health/live", timeout=5)
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    ready = until(
        lambda: (
            (r := httpx.get(f"{server.base_url}/health/ready", timeout=10)).status_code == 200 and r
        )
    )
    assert ready, "not ready within 10 s"
    assert ready.json()["status"] == "ready"
    assert ready.json()["max_lag"] == 1000
    assert httpx.get(f"{server.base_url}/health", timeout=5).json()["status"] == "ok"


def test_an_api_process_whose_views_nobody_folds_is_not_ready_and_says_which_lag(
    database: Database, tmp_path: Path
) -> None:
    schema = f"t_obs_unready_{uuid.uuid4().hex[:6]}"
    create_schema(database, schema)
    # No process of this schema runs the projections: the views stay where they are.
    alone = start_server(
        database, schema, tmp_path, DARKROOM_ROLES="api", DARKROOM_READY_MAX_LAG="0"
    )
    try:
        ok(alone.user().post("/api/projects", json={"name": "unfolded"}), 201)
        answer = httpx.get(f"{alone.base_url}/health/ready", timeout=10)
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert (body["status"], body["reason"], body["max_lag"]) == ("not_ready", "views_behind", 0)
        assert body["behind"]["projects"] == body["head_position"] > 0
        _, samples = scrape(alone)
        assert (
            value(samples, "darkroom_projection_lag_events", view="projects")
            == body["head_position"]
        )
    finally:
        stop_server(alone)
        drop_schema(database, schema)


def test_a_view_further_behind_the_head_than_allowed_is_named_with_its_lag() -> None:
    state = DatabaseState(head=5000, positions={"gallery": 4990, "tasks": 3000, "shots": 5000})
    assert state.behind(1000) == {"tasks": 2000}
    assert state.behind(0) == {"gallery": 10, "tasks": 2000}


def closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_database_fails_the_state_read_within_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        read_state(StateSource(f"host=127.0.0.1 port={closed_port()} dbname=x user=x", "public"))
    assert time.monotonic() - started < 3


def test_ready_answers_503_database_unreachable_and_metrics_database_up_0() -> None:
    app = Starlette(routes=[Route("/health/ready", ready), Route("/metrics", metrics)])
    app.state.config = SimpleNamespace(
        conninfo=f"host=127.0.0.1 port={closed_port()} dbname=x user=x",
        schema="public",
        ready_max_lag=1000,
        serve_api=True,
    )
    app.state.studio = None

    async def ask() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            return await client.get("/health/ready"), await client.get("/metrics")

    answer, scraped = asyncio.run(ask())
    assert answer.status_code == 503
    assert answer.json()["reason"] == "database_unreachable"
    assert scraped.status_code == 200
    assert "darkroom_database_up 0.0" in scraped.text
    assert "darkroom_events_head_position" not in scraped.text

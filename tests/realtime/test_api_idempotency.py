"""`Idempotency-Key` over HTTP, as the IETF draft and Stripe do it: a key is bound to its
caller, route and request body; a reuse elsewhere is 422 `idempotency_key_reused`, a reuse
while the first request runs is 409 `idempotency_key_in_flight`; keys live 24 h."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest

from darkroom.database import Database
from tests.realtime.api_harness import Server, error_of, ok, position, server

__all__ = ["server"]


@pytest.fixture
def alice(server: Server) -> httpx.Client:
    return server.user()


def project(client: httpx.Client) -> str:
    return str(ok(client.post("/api/projects", json={"name": "Keys"}), 201)["id"])


def generation(
    client: httpx.Client, project_id: str, key: str | None = None, location: str = "/media/a.png"
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        "/api/generations", json={"project_id": project_id, "location": location}, headers=headers
    )


def head(client: httpx.Client) -> int:
    return int(ok(client.get("/health"))["head_position"])


def test_a_create_key_reused_on_a_star_is_refused_and_the_star_is_not_lost(
    alice: httpx.Client,
) -> None:
    """The issue's case: this answered 200 "replayed" and the generation stayed unstarred."""
    made = ok(generation(alice, project(alice), "create-1"), 201)
    ident = made["id"]
    before = head(alice)
    refused = error_of(
        alice.patch(
            f"/api/generations/{ident}",
            json={"starred": True},
            headers={"Idempotency-Key": "create-1"},
        ),
        422,
    )
    assert refused["code"] == "idempotency_key_reused"
    assert "POST /api/generations" in refused["message"]
    assert head(alice) == before
    starred = alice.patch(
        f"/api/generations/{ident}", json={"starred": True}, headers={"Idempotency-Key": "star-1"}
    )
    ok(starred)
    view = ok(alice.get(f"/api/generations/{ident}?min_position={position(starred)}"))
    assert view["starred"] is True


def test_a_create_repeated_with_another_body_is_refused_not_answered_with_the_first(
    alice: httpx.Client,
) -> None:
    place = project(alice)
    first = ok(generation(alice, place, "gen-key", "/media/first.png"), 201)
    again = ok(generation(alice, place, "gen-key", "/media/first.png"), 201)
    assert again["id"] == first["id"] and again["replayed"] is True
    refused = error_of(generation(alice, place, "gen-key", "/media/second.png"), 422)
    assert refused["code"] == "idempotency_key_reused"
    assert "another request body" in refused["message"]


def test_the_same_body_with_other_spacing_and_key_order_is_the_same_request(
    alice: httpx.Client,
) -> None:
    place = project(alice)
    first = ok(generation(alice, place, "spacing", "/media/s.png"), 201)
    raw = json.dumps({"location": "/media/s.png", "project_id": place}, indent=3)
    again = ok(
        alice.post(
            "/api/generations",
            content=raw,
            headers={"Idempotency-Key": "spacing", "Content-Type": "application/json"},
        ),
        201,
    )
    assert again["id"] == first["id"] and again["replayed"] is True


def test_the_same_route_on_another_resource_is_another_request(alice: httpx.Client) -> None:
    place = project(alice)
    one = ok(generation(alice, place), 201)["id"]
    two = ok(generation(alice, place), 201)["id"]
    ok(
        alice.patch(
            f"/api/generations/{one}",
            json={"starred": True},
            headers={"Idempotency-Key": "star-any"},
        )
    )
    refused = error_of(
        alice.patch(
            f"/api/generations/{two}",
            json={"starred": True},
            headers={"Idempotency-Key": "star-any"},
        ),
        422,
    )
    assert refused["code"] == "idempotency_key_reused"


def test_a_key_is_bound_to_its_caller(server: Server, alice: httpx.Client) -> None:
    bob = server.user()
    mine = ok(generation(alice, project(alice), "shared-key"), 201)
    theirs = ok(generation(bob, project(bob), "shared-key"), 201)
    assert theirs["id"] != mine["id"] and "replayed" not in theirs


def test_a_key_reused_while_its_first_request_runs_is_409_then_a_replay(
    server: Server, alice: httpx.Client, database: Database, schema: str
) -> None:
    """The first request is held at its save by a lock this test takes on the event log;
    the second, sent meanwhile with the same key, is refused at once with 409."""
    place = project(alice)
    answers: list[httpx.Response] = []
    with psycopg.connect(database.conninfo) as conn:
        conn.execute(f'LOCK TABLE "{schema}".darkroom_events IN EXCLUSIVE MODE')
        first = threading.Thread(
            target=lambda: answers.append(generation(alice, place, "slow-key", "/media/slow.png"))
        )
        first.start()
        waiting_for(database, schema)
        busy = error_of(generation(alice, place, "slow-key", "/media/slow.png"), 409)
        assert busy["code"] == "idempotency_key_in_flight"
        other = error_of(generation(alice, place, "slow-key", "/media/other.png"), 422)
        assert other["code"] == "idempotency_key_reused"
        conn.rollback()
    first.join(30)
    made = ok(answers[0], 201)
    again = ok(generation(alice, place, "slow-key", "/media/slow.png"), 201)
    assert again["id"] == made["id"] and again["replayed"] is True


def waiting_for(database: Database, schema: str, within: float = 10.0) -> None:
    """Until a server connection waits for the lock on the schema's event log."""
    deadline = time.monotonic() + within
    with psycopg.connect(database.conninfo, autocommit=True) as conn:
        while time.monotonic() < deadline:
            found: Any = conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE NOT l.granted AND n.nspname = %s AND c.relname = 'darkroom_events'",
                (schema,),
            ).fetchone()
            if found[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the first request never reached its save")


def test_an_expired_key_is_a_new_request(
    alice: httpx.Client, database: Database, schema: str
) -> None:
    place = project(alice)
    first = ok(generation(alice, place, "day-old", "/media/day.png"), 201)
    with psycopg.connect(database.conninfo) as conn:
        conn.execute(
            f'UPDATE "{schema}".darkroom_events_commands SET created_at = '
            "now() - interval '25 hours' WHERE key LIKE %s",
            ("%:day-old",),
        )
    fresh = ok(generation(alice, place, "day-old", "/media/other-day.png"), 201)
    assert fresh["id"] != first["id"] and "replayed" not in fresh

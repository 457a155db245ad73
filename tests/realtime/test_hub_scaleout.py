"""Two hub processes and one real Redis server: changes cross nodes, clients survive a node."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.studio import Studio
from projections import changelog, db
from projections.reading import wait_for_position
from tests.realtime.hub_harness import (
    Client,
    HubServer,
    new_user,
    redis_url,  # noqa: F401  (fixture)
    start_hub,
    token_for,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def studio(database: Database, schema: str) -> Iterator[Studio]:
    app = build_studio(database, schema, pool_size=2)
    yield app
    app.close()


@pytest.fixture(scope="module")
def nodes(database: Database, schema: str, redis_url: str) -> Iterator[list[HubServer]]:  # noqa: F811
    # A long staleness fallback: within these tests, B only learns of changes through Redis.
    settings = {
        "REDIS_URL": redis_url,
        "DARKROOM_WS_STALE_AFTER_S": "60",
        "DARKROOM_WS_IDLE_TIMEOUT_S": "120",
    }
    a = start_hub(database, schema, **settings)
    b = start_hub(database, schema, **settings)
    yield [a, b]
    for node in (a, b):
        node.stop()


async def test_a_client_on_node_b_sees_a_change_committed_through_node_a(
    nodes: list[HubServer],
) -> None:
    a, b = nodes
    user = new_user()
    http_a = httpx.AsyncClient(
        base_url=a.http, headers={"Authorization": f"Bearer {token_for(user)}"}
    )
    project = (await http_a.post("/api/projects", json={"name": "Across"})).json()["id"]
    client = await Client.open(b, user)
    await client.subscribe(f"project:{project}")
    started = asyncio.get_running_loop().time()
    created = await http_a.post(
        "/api/generations",
        json={"project_id": project, "location": "s3://across.png", "name": "from A"},
    )
    assert created.status_code == 201, created.text
    position = int(created.headers["X-Darkroom-Position"])
    changes = await client.changes_until(f"project:{project}", position, timeout=10)
    elapsed = asyncio.get_running_loop().time() - started
    assert changes[-1]["data"]["name"] == "from A"
    assert elapsed < 5  # far below the 60 s fallback: it came through Redis
    await client.close()
    await http_a.aclose()


async def test_clients_of_a_killed_node_resume_on_the_other_and_lose_nothing(
    nodes: list[HubServer], studio: Studio, database: Database, schema: str
) -> None:
    a, b = nodes
    user = new_user()
    project = studio.create_project(user, "Failover")["project_id"]
    topic = f"project:{project}"
    on_a = [await Client.open(a, user) for _ in range(3)]
    for client in on_a:
        await client.subscribe(topic)
    first = [
        studio.create_generation(project, user, f"s3://a{i}.png", name=f"a{i}") for i in range(20)
    ]
    last_seen = []
    for client in on_a:
        changes = await client.changes_until(topic, first[-1]["position"])
        last_seen.append(changes[-1]["position"])
    a.kill()
    for client in on_a:
        with pytest.raises(ConnectionClosed):
            await client.recv(timeout=10)
    during = [
        studio.create_generation(project, user, f"s3://b{i}.png", name=f"b{i}") for i in range(30)
    ]  # A is dead; the runner on B takes over
    with db.connect(database.conninfo, schema) as conn:
        wait_for_position(conn, during[-1]["position"], timeout=60)
        logged = [r["position"] for r in changelog.changes_since(conn, [topic], 0, 10_000)]
    for n, since in enumerate(last_seen):
        client = await Client.open(b, user)
        resumed = await client.subscribe(topic, since=since)
        assert resumed["recovered"] is True
        got = [c["position"] for c in await client.changes_until(topic, logged[-1])]
        assert got == [p for p in logged if p > since]
        live = studio.rename_generation(first[0]["generation_id"], user, f"live {n}")["position"]
        assert [c["position"] for c in await client.changes_until(topic, live)] == [live]
        logged.append(live)
        await client.close()
    assert b.healthy()

"""Snapshot-then-stream and resume, through a real hub process, while commands land."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.studio import Studio
from projections import changelog, db
from projections.reading import wait_for_position
from realtime.snapshots import take_snapshot
from tests.realtime.hub_harness import (
    Client,
    HubServer,
    ProjectMirror,
    new_user,
    project_state,
    start_hub,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def studio(database: Database, schema: str) -> Iterator[Studio]:
    app = build_studio(database, schema, pool_size=4)
    yield app
    app.close()


@pytest.fixture(scope="module")
def server(database: Database, schema: str) -> Iterator[HubServer]:
    # Clients here read in bursts (after a writer finishes): no idle drops.
    running = start_hub(
        database, schema, DARKROOM_WS_IDLE_TIMEOUT_S="120", DARKROOM_WS_QUEUE_BYTES=str(1024 * 1024)
    )
    yield running
    running.stop()


def fresh_view(database: Database, schema: str, topic: str, position: int) -> tuple[int, Any]:
    with db.connect(database.conninfo, schema) as conn:
        wait_for_position(conn, position, timeout=30)
        return take_snapshot(conn, topic)  # type: ignore[arg-type]


class Workload:
    """Commands on one project from a thread: uploads, stars, renames, shots, deletes."""

    def __init__(self, studio: Studio, user: str, project: str, seed: int = 7) -> None:
        self.studio, self.user, self.project = studio, user, project
        self.random = random.Random(seed)
        self.generations: list[str] = []
        self.shots: list[str] = []
        self.last = 0

    def step(self, i: int) -> None:
        s, u, p, pick = self.studio, self.user, self.project, self.random.random()
        if not self.generations or pick < 0.35:
            shot = self.random.choice(self.shots) if self.shots and pick < 0.15 else None
            result = s.create_generation(p, u, f"s3://{i}.png", name=f"g{i}", shot_id=shot)
            self.generations.append(result["generation_id"])
        elif pick < 0.55:
            result = s.star_generation(self.random.choice(self.generations), u, pick < 0.45)
        elif pick < 0.65:
            result = s.rename_generation(self.random.choice(self.generations), u, f"r{i}")
        elif pick < 0.75 or not self.shots:
            result = s.create_shot(p, u, f"shot {i}")
            self.shots.append(result["shot_id"])
        elif pick < 0.9:
            result = s.add_to_shot(
                self.random.choice(self.shots), u, self.random.choice(self.generations)
            )
        elif len(self.generations) > 3:
            result = s.delete_generation(self.generations.pop(0), u)
        else:
            result = s.update_project(p, u, name=f"project {i}")
        self.last = result["position"]

    def run(self, count: int, pause: float = 0.0) -> threading.Thread:
        def go() -> None:
            for i in range(count):
                self.step(i)
                if pause:
                    threading.Event().wait(pause)

        thread = threading.Thread(target=go, daemon=True)
        thread.start()
        return thread


async def follow(client: Client, topic: str, mirror: ProjectMirror, stop: int) -> list[int]:
    positions: list[int] = []
    for change in await client.changes_until(topic, stop, timeout=60):
        positions.append(change["position"])
        mirror.apply(change)
    return positions


async def test_clients_subscribing_while_commands_land_end_with_the_fresh_view(
    server: HubServer, studio: Studio, database: Database, schema: str
) -> None:
    user = new_user()
    project = studio.create_project(user, "Busy")["project_id"]
    topic = f"project:{project}"
    work = Workload(studio, user, project)
    writer = work.run(240, pause=0.004)
    clients: list[tuple[Client, ProjectMirror, int]] = []
    for _ in range(6):  # staggered: each snapshot lands at a different moment
        await asyncio.sleep(0.15)
        client = await Client.open(server, user)
        subscribed = await client.subscribe(topic)
        clients.append((client, ProjectMirror(subscribed["snapshot"]), subscribed["position"]))
    await asyncio.to_thread(writer.join)
    final = studio.update_project(project, user, name="Done")["position"]
    expected = fresh_view(database, schema, topic, final)
    assert len(expected[1]["generations"]) > 20 and expected[1]["shots"]
    for client, mirror, start in clients:
        positions = await follow(client, topic, mirror, final)
        assert positions == sorted(set(positions)), "a position came twice or out of order"
        assert not positions or positions[0] > start
        assert mirror.state() == project_state(expected[1])
        await client.close()
    assert len({start for _, _, start in clients}) > 1


async def test_a_client_killed_mid_stream_resumes_with_since_and_misses_nothing(
    server: HubServer, studio: Studio, database: Database, schema: str
) -> None:
    user = new_user()
    project = studio.create_project(user, "Resume")["project_id"]
    generation = studio.create_generation(project, user, "s3://one.png")["generation_id"]
    topic = f"generation:{generation}"
    client = await Client.open(server, user)
    await client.subscribe(topic)
    writer = threading.Thread(
        target=lambda: [studio.star_generation(generation, user, i % 2 == 0) for i in range(100)],
        daemon=True,
    )
    writer.start()
    seen: list[int] = []
    while len(seen) < 30:
        frame = await client.recv()
        if frame["type"] == "change":
            seen.append(frame["position"])
    client.ws.transport.abort()  # killed: no close handshake
    await asyncio.to_thread(writer.join)
    last = 0
    for i in range(500):
        last = (await asyncio.to_thread(studio.star_generation, generation, user, i % 2 == 1))[
            "position"
        ]
    since = seen[-1]
    with db.connect(database.conninfo, schema) as conn:
        wait_for_position(conn, last, timeout=30)
        logged = [r["position"] for r in changelog.changes_since(conn, [topic], since, 10_000)]
    assert len(logged) >= 500
    again = await Client.open(server, user)
    resumed = await again.subscribe(topic, since=since)
    assert (resumed["recovered"], resumed["position"], resumed.get("snapshot")) == (
        True,
        since,
        None,
    )
    replayed = [c["position"] for c in await again.changes_until(topic, logged[-1])]
    assert replayed == logged
    live = studio.rename_generation(generation, user, "after")["position"]
    tail = await again.changes_until(topic, live)
    assert [c["position"] for c in tail] == [live]
    assert tail[0]["data"]["name"] == "after"
    await again.close()


async def test_every_topic_kind_streams_its_view(
    server: HubServer, studio: Studio, database: Database, schema: str
) -> None:
    user = new_user()
    project = studio.create_project(user, "Kinds")["project_id"]
    generation = studio.create_generation(project, user, "s3://k.png")["generation_id"]
    shot = studio.create_shot(project, user, "S")["shot_id"]
    client = await Client.open(server, user)
    topics = {
        "shot": f"shot:{shot}",
        "generation": f"generation:{generation}",
        "credits": f"credits:{user}",
        "tasks": f"tasks:{project}",
    }
    for topic in topics.values():
        assert (await client.subscribe(topic))["type"] == "subscribed"
    added = studio.add_to_shot(shot, user, generation)["position"]
    variant = studio.add_variant(generation, user, "s3://k2.png")["position"]
    granted = studio.grant_credits(user, 5, "test")["position"]
    kinds = {}
    for name, stop in (("shot", added), ("generation", variant), ("credits", granted)):
        kinds[name] = {
            k for c in await client.changes_until(topics[name], stop) for k in [c["kind"]]
        }
    assert "shot.upserted" in kinds["shot"]
    assert kinds["generation"] & {"variant.upserted", "batch"}
    assert kinds["credits"] == {"credits.changed"}
    await client.close()

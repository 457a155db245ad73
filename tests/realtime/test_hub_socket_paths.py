"""Both ways a live change leaves the hub reach every client exactly once, in order.

Under uvicorn's websockets-sansio protocol the fan-out writes a change's frame (built
once per change) straight to each socket; under any other server (here uvicorn's
legacy `websockets` protocol, whose internals differ) the session finds no socket to
write to and every frame goes through the ASGI `send`. The hub runs under uvicorn in
this test's event loop, so the test sees which path each connection took.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import Side
from websockets.server import ServerProtocol

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.metadata import CommandMeta
from projections import all_views
from projections import db as pdb
from projections.engine.runner import prepare
from realtime.app import create_app
from realtime.auth import issue_jwt
from realtime.config import EdgeConfig
from realtime.fanout import Batch, Change
from realtime.hub import Hub, HubSettings
from realtime.outbox import Outbox, Subscription, deliver
from realtime.ws import hub_lifespan, hub_routes
from tests.realtime.hub_harness import free_port

pytestmark = [
    pytest.mark.timeout(120),
    # uvicorn's legacy `websockets` protocol, and the `websockets.legacy` it runs on
    pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
JWT_SECRET = "test-socket-paths-jwt-secret-of-32-bytes"
CLIENTS = 3


def test_a_change_built_once_is_the_frame_the_websockets_core_builds_on_each_socket() -> None:
    change = Change(7, "project:p", "generation.upserted", json.dumps({"name": "é" * 200}))
    core = ServerProtocol()
    core.state = core.state.OPEN
    assert core.side is Side.SERVER
    core.send_text(change.data)
    assert change.framed == b"".join(core.data_to_send())


class Socket:
    """A socket the fan-out may write to directly: it takes frames while `open`."""

    def __init__(self) -> None:
        self.open = True
        self.written: list[int] = []

    def send_change(self, change: Change) -> bool:
        if self.open:
            self.written.append(change.position)
        return self.open

    def send_changes(self, changes: list[Change]) -> bool:
        if self.open:
            self.written.extend(c.position for c in changes)
        return self.open


def tick(position: int, data: str = '{"n":1}') -> Change:
    return Change(position, "project:p", "bench.tick", data)


def live(outbox: Outbox) -> Subscription:
    sub = Subscription("project:p", outbox)
    sub.buffer = None  # caught up
    return sub


@pytest.mark.asyncio(loop_scope="session")
async def test_once_a_change_waits_in_the_queue_the_next_ones_wait_behind_it() -> None:
    outbox, socket = Outbox(10_000), Socket()
    outbox.socket = socket
    sub = live(outbox)
    deliver([sub], tick(1))
    socket.open = False  # the transport is past its high-water mark
    deliver([sub], tick(2))
    socket.open = True
    deliver([sub], tick(3))
    deliver([sub], tick(3))  # again: already delivered
    assert socket.written == [1]
    assert [frame for frame, _, _ in outbox.frames] == [tick(2).frame, tick(3).frame]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_change_past_the_byte_bound_condemns_the_connection_though_the_socket_is_free() -> (
    None
):
    outbox, socket = Outbox(100), Socket()
    outbox.socket = socket
    deliver([live(outbox)], tick(1, json.dumps({"name": "x" * 200})))
    assert socket.written == []
    assert outbox.closed and outbox.reason == "slow_consumer"


class Served:
    def __init__(self, hub: Hub, url: str, topic: str) -> None:
        self.hub, self.url, self.topic = hub, url, topic
        self.position = hub.head

    def changes(self, count: int) -> list[Change]:
        made = [
            Change(self.position + i + 1, self.topic, "bench.tick", json.dumps({"n": i}))
            for i in range(count)
        ]
        self.position += count
        return made

    async def publish(self, changes: list[Change], burst: int) -> None:
        for i in range(0, len(changes), burst):
            group = tuple(changes[i : i + burst])
            await self.hub.backend.publish(Batch(group[0].position - 1, group[-1].position, group))
            await asyncio.sleep(0)

    def sockets(self) -> list[Any]:
        """What each subscribed connection writes live changes to (None: the ASGI send)."""
        return [sub.outbox.socket for sub in self.hub.topics.get(self.topic, ())]


@pytest.fixture(params=["websockets-sansio", "websockets"], scope="module")
async def served(
    request: pytest.FixtureRequest, database: Database, schema: str
) -> AsyncIterator[Served]:
    with pdb.connect(database.conninfo, schema) as conn:
        prepare(conn, all_views(), managed=True, versions={})
    setup = build_studio(database, schema, pool_size=2)
    # Registered here, so the hub has no first write of theirs to wait for (no runner runs).
    setup.ensure_user("paths", CommandMeta.for_user("paths"))
    project = setup.create_project("paths", f"Socket paths {request.param}")["project_id"]
    setup.close()
    config = EdgeConfig(
        conninfo=database.conninfo,
        schema=schema,
        jwt_secret=JWT_SECRET,
        service_key="test-socket-paths-service-key",
        jwt_sub_any=True,
        build_studio=lambda: build_studio(database, schema, pool_size=2),
    )
    app = create_app(
        config,
        extra_routes=hub_routes(),
        extra_lifespans=[hub_lifespan(HubSettings(stale_after_s=600))],
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            ws=request.param,
            ws_per_message_deflate=False,
            log_level="warning",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield Served(app.state.hub, f"ws://127.0.0.1:{port}/ws", f"project:{project}")
    finally:
        server.should_exit = True
        await serving


async def subscribed(served: Served) -> ClientConnection:
    ws = await connect(served.url, compression=None, max_queue=None)
    await ws.send(json.dumps({"type": "auth", "token": issue_jwt(JWT_SECRET, "paths")}))
    assert json.loads(await ws.recv())["type"] == "ready"
    await ws.send(json.dumps({"type": "subscribe", "topic": served.topic}))
    while (frame := json.loads(await ws.recv()))["type"] != "subscribed":
        assert frame["type"] != "error", frame
    return ws


async def positions(ws: ClientConnection, until: int) -> list[int]:
    """The positions of the change frames the client gets, until one reaches `until`."""
    seen: list[int] = []
    while not seen or seen[-1] < until:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if frame["type"] == "change":
            seen.append(frame["position"])
    return seen


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("burst", [1, 20])
async def test_every_live_change_reaches_each_client_once_and_in_order_on_either_path(
    served: Served, burst: int, request: pytest.FixtureRequest
) -> None:
    clients = [await subscribed(served) for _ in range(CLIENTS)]
    try:
        direct = request.node.callspec.params["served"] == "websockets-sansio"
        sockets = served.sockets()
        assert len(sockets) == CLIENTS
        assert all((socket is not None) is direct for socket in sockets)
        changes = served.changes(120)
        await served.publish(changes, burst)
        want = [c.position for c in changes]
        for ws in clients:
            assert await positions(ws, want[-1]) == want
    finally:
        for ws in clients:
            await ws.close()

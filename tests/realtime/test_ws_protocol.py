"""The `/ws` protocol's documented answers, through a real hub process and real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.studio import Studio
from projections import changelog, db
from projections.reading import wait_for_position
from tests.realtime.hub_harness import (
    SERVICE_KEY,
    Client,
    HubServer,
    new_user,
    start_hub,
    token_for,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def studio(database: Database, schema: str) -> Iterator[Studio]:
    app = build_studio(database, schema, pool_size=2)
    yield app
    app.close()


@pytest.fixture(scope="module")
def server(database: Database, schema: str) -> Iterator[HubServer]:
    running = start_hub(database, schema)
    yield running
    running.stop()


async def closed_with(ws: object, timeout: float = 10) -> int | None:
    """Reads until the server closes; returns the close code."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()  # type: ignore[attr-defined]
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def test_a_bad_token_is_answered_and_closed_with_4401(server: HubServer) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "not-a-token"}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["code"] in ("invalid_token", "unauthenticated")
        assert await closed_with(ws) == 4401
    assert server.healthy()


async def test_a_client_that_never_authenticates_is_closed_with_4408(server: HubServer) -> None:
    async with connect(server.ws_url) as ws:
        assert await closed_with(ws, timeout=5) == 4408
    assert server.healthy()


async def test_a_frame_other_than_auth_first_is_closed_with_4401(server: HubServer) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "topic": "credits:x"}))
        assert json.loads(await ws.recv())["code"] == "unauthenticated"
        assert await closed_with(ws) == 4401


async def test_a_token_on_the_url_authenticates_without_an_auth_frame(server: HubServer) -> None:
    user = new_user()
    async with connect(f"{server.ws_url}?token={token_for(user)}") as ws:
        ready = json.loads(await ws.recv())
    assert ready["type"] == "ready" and ready["user_id"] == user
    assert isinstance(ready["position"], int)


async def test_a_personal_access_token_authenticates_until_it_is_revoked(
    server: HubServer, studio: Studio
) -> None:
    user = new_user()
    issued = studio.issue_token(user, "hub test")
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": issued["token"]}))
        assert json.loads(await ws.recv())["user_id"] == user
    studio.revoke_token(user, issued["token_id"])
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": issued["token"]}))
        assert json.loads(await ws.recv())["type"] == "error"
        assert await closed_with(ws) == 4401


async def test_malformed_frames_get_bad_request_and_the_socket_stays_open(
    server: HubServer,
) -> None:
    client = await Client.open(server, new_user())
    for frame in (
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"type": "launch"}),
        json.dumps({"type": "subscribe", "topic": "nope:1", "ref": 7}),
        json.dumps({"type": "subscribe", "topic": "project:x", "since": -3}),
        "x" * 70_000,
    ):
        await client.send(frame)
        error = await client.recv()
        assert (error["type"], error["code"]) == ("error", "bad_request"), error
        if "nope" in frame:
            assert (error["topic"], error["ref"]) == ("nope:1", 7)  # echoed for the client
    await client.send({"type": "ping"})
    assert (await client.recv())["type"] == "pong"
    await client.close()
    assert server.healthy()


async def test_a_client_that_only_sends_garbage_is_closed_with_4500(server: HubServer) -> None:
    client = await Client.open(server, new_user())
    for _ in range(25):
        await client.send("{garbage")
    assert await closed_with(client.ws) == 4500
    assert server.healthy()


async def test_another_users_topics_are_forbidden_and_the_socket_stays_open(
    server: HubServer, studio: Studio
) -> None:
    owner, stranger = new_user(), new_user()
    project = studio.create_project(owner, "Private")["project_id"]
    generation = studio.create_generation(project, owner, "s3://a.png")["generation_id"]
    shot = studio.create_shot(project, owner, "Shot")["shot_id"]
    client = await Client.open(server, stranger)
    for topic in (
        f"project:{project}",
        f"tasks:{project}",
        f"generation:{generation}",
        f"shot:{shot}",
        f"credits:{owner}",
        "project:00000000-0000-0000-0000-000000000000",
    ):
        answer = await client.subscribe(topic, ref="r1")
        assert answer == {
            "type": "error",
            "code": "forbidden",
            "topic": topic,
            "ref": "r1",
            "message": answer["message"],
        }
    assert (await client.subscribe(f"credits:{stranger}"))["type"] == "subscribed"
    await client.close()
    owner_client = await Client.open(server, owner)
    assert (await owner_client.subscribe(f"shot:{shot}"))["type"] == "subscribed"
    await owner_client.close()


async def test_the_service_key_may_subscribe_to_any_topic(
    server: HubServer, studio: Studio
) -> None:
    project = studio.create_project(new_user(), "Watched")["project_id"]
    async with connect(server.ws_url) as ws:
        client = Client(ws)
        await client.send({"type": "auth", "token": SERVICE_KEY})
        assert (await client.recv())["user_id"] is None
        assert (await client.subscribe(f"tasks:{project}"))["type"] == "subscribed"


async def test_the_server_pings_and_drops_a_silent_client_with_4002(server: HubServer) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token_for(new_user())}))
        assert json.loads(await ws.recv())["type"] == "ready"
        assert json.loads(await asyncio.wait_for(ws.recv(), 3))["type"] == "ping"
        assert await closed_with(ws, timeout=10) == 4002  # we never answer
    assert server.healthy()


async def test_a_client_answering_pings_stays_connected_past_the_idle_timeout(
    server: HubServer,
) -> None:
    client = await Client.open(server, new_user())
    await asyncio.sleep(0.1)
    deadline = asyncio.get_running_loop().time() + 3.5  # idle timeout is 2 s here
    while asyncio.get_running_loop().time() < deadline:
        with pytest.raises(TimeoutError):
            await client.recv(timeout=0.3)  # `recv` answers pings with pongs
    await client.send({"type": "ping"})
    assert (await client.recv())["type"] == "pong"
    await client.close()


async def keep_pinging(client: Client, every_s: float = 0.4) -> None:
    """Keeps a client that does not read from looking silent, until its connection closes."""
    try:
        while True:
            await client.send({"type": "ping"})
            await asyncio.sleep(every_s)
    except ConnectionClosed:
        return


async def test_a_slow_consumer_is_closed_with_4001_and_resumes_with_since(
    server: HubServer, studio: Studio, database: Database, schema: str
) -> None:
    user = new_user()
    project = studio.create_project(user, "Firehose")["project_id"]
    topic = f"project:{project}"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    slow = Client(await connect(server.ws_url, sock=sock, max_queue=2))
    await slow.send({"type": "auth", "token": token_for(user)})
    assert (await slow.recv())["type"] == "ready"
    subscribed = await slow.subscribe(topic)
    big = {"prompt": "x" * 20_000}
    made = []
    # We do not read, but we are not silent either: what ends this connection must be
    # its full queue (4001), never the idle timeout (4002), however slow the machine.
    pinger = asyncio.create_task(keep_pinging(slow))
    seen: list[int] = []
    try:
        for i in range(80):  # ≈ 3 MB of changes against a 256 KiB queue
            made.append(
                await asyncio.to_thread(
                    studio.create_generation,
                    project,
                    user,
                    f"s3://{i}.png",
                    params=big,
                    name=f"g{i}",
                )
            )

        def folded() -> None:
            with db.connect(database.conninfo, schema) as conn:
                wait_for_position(conn, made[-1]["position"], timeout=60)

        # Every change is in the log the hub relays (a client that read now, before the
        # hub had pushed most of them, would drain its queue and never overflow it).
        await asyncio.to_thread(folded)
        await asyncio.sleep(2.0)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(30):
                while True:
                    frame = json.loads(await slow.ws.recv())
                    if frame["type"] == "change":
                        seen.append(frame["position"])
    finally:
        pinger.cancel()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    assert seen == sorted(set(seen)) and (not seen or seen[-1] < made[-1]["position"])
    assert server.healthy()

    again = await Client.open(server, user)
    since = seen[-1] if seen else subscribed["position"]
    resumed = await again.subscribe(topic, since=since)
    assert resumed["recovered"] is True and resumed["position"] == since
    rest = await again.changes_until(topic, made[-1]["position"])
    names = {c["data"]["name"] for c in rest if c["kind"] == "generation.upserted"}
    assert [c["position"] for c in rest] == sorted({c["position"] for c in rest})
    assert rest[0]["position"] > since
    assert {f"g{i}" for i in range(80)} - names <= {
        f"g{i}" for i, m in enumerate(made) if m["position"] <= since
    }
    await again.close()


async def test_since_outside_the_retained_log_is_unrecoverable_and_resubscribing_works(
    server: HubServer, studio: Studio, database: Database, schema: str
) -> None:
    user = new_user()
    project = studio.create_project(user, "Old")["project_id"]
    written = studio.create_generation(project, user, "s3://old.png")["position"]
    client = await Client.open(server, user)
    topic = f"project:{project}"
    first = await client.subscribe(topic)
    assert first["type"] == "subscribed"
    with db.connect(database.conninfo, schema) as conn:
        wait_for_position(conn, written, timeout=30)
        changelog.prune(conn, older_than=timedelta(0))
    answer = await client.subscribe(topic, since=1, ref="again")
    assert answer == {
        "type": "error",
        "code": "unrecoverable_position",
        "topic": topic,
        "ref": "again",
        "message": answer["message"],
    }
    future = await client.subscribe(topic, since=10**12)
    assert future["code"] == "unrecoverable_position"
    fresh = await client.subscribe(topic)
    assert fresh["type"] == "subscribed" and fresh["recovered"] is False
    assert fresh["snapshot"]["project"]["id"] == project
    await client.close()

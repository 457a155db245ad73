"""Read-your-own-writes by default, on two `darkroom serve` nodes sharing PostgreSQL and Redis.

The short form of `bench/ryow.py` (1,000 pairs there): one user's write-then-read
pairs spread over both nodes, with nothing passed but the token, and no read misses
its write; a new user's first read shows the welcome credits; a websocket snapshot on the
other node holds the subscriber's own write; another user's reads
do not take up the writer's position (`SessionPositions`, against the same Redis).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from darkroom.database import Database
from realtime.auth import Principal
from realtime.sessions import SessionPositions

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import history_http
import ryow

pytestmark = pytest.mark.timeout(300)

PAIRS = 120


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ryow.redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="module")
def servers(
    database: Database, schema: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[history_http.Served]]:
    with ryow.two_nodes(
        database, schema, tmp_path_factory.mktemp("ryow"), redis_url, ryow.ON
    ) as both:
        yield both


@pytest.fixture(scope="module")
def run(servers: list[history_http.Served]) -> dict[str, Any]:
    result = ryow.ryow_phase(servers, ryow.ON, PAIRS, others=1)
    ryow.print_phase(result)  # shown with -s, or when a test fails
    return result


def test_no_read_misses_the_write_before_it_on_either_node(run: dict[str, Any]) -> None:
    assert len(run["misses"]) == 0, run["misses"][:5]
    assert run["pairs"] == PAIRS


def test_other_users_kept_reading_their_own_items_meanwhile(run: dict[str, Any]) -> None:
    assert run["others_reads"] > 0
    assert run["others_failures"] == []
    assert run["server_log_errors"] == {}


def test_a_new_users_first_read_on_the_other_node_shows_the_welcome_credits(
    servers: list[history_http.Served],
) -> None:
    balances = []
    for n in range(10):
        user = history_http.new_user("welcome")
        first, second = servers[n % 2], servers[(n + 1) % 2]
        auth = {"Authorization": f"Bearer {history_http.token(user)}"}
        httpx.get(f"{first.base}/api/projects", headers=auth, timeout=30)
        answer = httpx.get(f"{second.base}/api/credits", headers=auth, timeout=30)
        balances.append(answer.json()["balance"])
    assert balances == [10.0] * 10


def test_a_websocket_snapshot_on_the_other_node_holds_the_subscribers_own_write(
    servers: list[history_http.Served],
) -> None:
    user = history_http.new_user("socket")
    auth = {"Authorization": f"Bearer {history_http.token(user)}"}
    project = httpx.post(
        f"{servers[0].base}/api/projects", json={"name": "live"}, headers=auth, timeout=30
    ).json()["id"]
    url = servers[1].base.replace("http", "ws") + "/ws"
    missing = []
    with connect(url) as socket:
        socket.send(json.dumps({"type": "auth", "token": history_http.token(user)}))
        assert json.loads(socket.recv(timeout=30))["type"] == "ready"
        for n in range(10):
            made = httpx.post(
                f"{servers[n % 2].base}/api/generations",
                headers=auth,
                json={"project_id": project, "location": f"/media/s{n}.png"},
                timeout=30,
            ).json()["id"]
            socket.send(json.dumps({"type": "subscribe", "topic": f"project:{project}"}))
            while (frame := json.loads(socket.recv(timeout=30)))["type"] != "subscribed":
                pass
            if made not in [g["id"] for g in frame["snapshot"]["generations"]]:
                missing.append(n)
            socket.send(json.dumps({"type": "unsubscribe", "topic": f"project:{project}"}))
    assert missing == []


def test_min_position_still_asks_for_more_than_the_callers_own_writes(
    servers: list[history_http.Served],
) -> None:
    """Another user's write, read through `?min_position=` from its answer."""
    writer, reader = (history_http.new_user(n) for n in ("minpos-w", "minpos-r"))
    wrote = httpx.post(
        f"{servers[0].base}/api/projects",
        json={"name": "theirs"},
        headers={"Authorization": f"Bearer {history_http.token(writer)}"},
    )
    position = int(wrote.headers["X-Darkroom-Position"])
    answer = httpx.get(
        f"{servers[1].base}/api/projects",
        params={"min_position": position},
        timeout=30,
        headers={"Authorization": f"Bearer {history_http.token(reader)}"},
    )
    assert answer.status_code == 200
    future = httpx.get(
        f"{servers[1].base}/api/projects",
        params={"min_position": position + 10**9},
        timeout=30,
        headers={"Authorization": f"Bearer {history_http.token(reader)}"},
    )
    assert future.json()["code"] == "position_not_written"


@asynccontextmanager
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[SessionPositions, SessionPositions]]:
    """Two processes' positions on one schema, sharing the Redis."""
    schema = f"s{uuid.uuid4().hex[:8]}"
    async with (
        SessionPositions(schema, redis_url) as one,
        SessionPositions(schema, redis_url) as other,
    ):
        yield one, other


async def test_a_users_position_is_known_on_every_node_and_only_for_that_user(
    redis_url: str,
) -> None:
    async with two_nodes(redis_url) as (node_a, node_b):
        await check_known_everywhere(node_a, node_b)


async def check_known_everywhere(node_a: SessionPositions, node_b: SessionPositions) -> None:
    writer, reader = Principal("jwt", "writer"), Principal("pat", "reader")
    await node_a.remember(writer, 42)
    assert await node_b.position(writer) == 42
    assert await node_b.position(Principal("pat", "writer")) == 42  # any of their tokens
    assert await node_b.position(reader) == 0
    assert await node_b.position(Principal("service", None)) == 0


async def test_a_position_is_only_ever_raised(redis_url: str) -> None:
    writer = Principal("jwt", "writer")
    async with two_nodes(redis_url) as (node_a, node_b):
        await node_a.remember(writer, 50)
        await node_b.remember(writer, 40)  # an earlier write acknowledged later
        assert await node_a.position(writer) == 50
        assert await node_b.position(writer) == 50


async def test_switched_off_nothing_is_waited_for(redis_url: str) -> None:
    async with SessionPositions("off", redis_url, enabled=False) as off:
        await off.remember(Principal("jwt", "writer"), 7)
        assert await off.position(Principal("jwt", "writer")) == 0

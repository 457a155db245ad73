"""A real Darkroom server process for the HTTP API tests, and a small client around it.

One uvicorn process per test module (`darkroom serve`'s own code path via
`darkroom.wiring.build_app`), on the embedded PostgreSQL, in the module's
schema, on a free loopback port.
"""

from __future__ import annotations

import os
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

from darkroom.database import Database
from realtime.auth import issue_jwt

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "test-jwt-secret-of-at-least-32-bytes!"
SERVICE_KEY = "test-service-key"
LAUNCH = (
    "import sys, uvicorn\n"
    "from darkroom import redact\n"
    "redact.install()\n"  # as `darkroom serve`: no credential in any log line
    "from darkroom.settings import Settings\n"
    "from darkroom.wiring import build_app\n"
    "uvicorn.run(build_app(Settings()), host='127.0.0.1', port=int(sys.argv[1]),"
    " log_level='info')\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def user(self, name: str | None = None) -> httpx.Client:
        """A client holding a fresh user's JWT (user ids are UUIDs)."""
        user_id = name or str(uuid.uuid4())
        client = self.client(issue_jwt(JWT_SECRET, user_id))
        client.headers["X-Test-User"] = user_id
        return client

    def service(self, act_as: str | None = None) -> httpx.Client:
        headers = {"X-Darkroom-User": act_as} if act_as else {}
        return self.client(SERVICE_KEY, **headers)


def server_env(database: Database, schema: str, data_dir: Path, **extra: str) -> dict[str, str]:
    url = (
        f"postgresql://{database.user}:{database.password}@/{database.dbname}"
        f"?host={database.host}&port={database.port}"
    )
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DARKROOM_DB_SCHEMA": schema,
        "DATA_DIR": str(data_dir),
        "DARKROOM_JWT_SECRET": JWT_SECRET,
        "DARKROOM_SERVICE_KEY": SERVICE_KEY,
        "DARKROOM_POOL_SIZE": "4",
        "DARKROOM_READ_TIMEOUT_S": "3",
        **extra,
    }


def start_server(database: Database, schema: str, data_dir: Path, **extra: str) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(port)],
        cwd=ROOT,
        env=server_env(database, schema, data_dir, **extra),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return Server(base, data_dir, process)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not answer /health within 60 s")


def stop_server(server: Server) -> None:
    for client in server.clients:
        client.close()
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def server(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(database, schema, tmp_path_factory.mktemp("darkroom"))
    yield running
    stop_server(running)


def position(response: httpx.Response) -> int:
    return int(response.headers["X-Darkroom-Position"])


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content else None


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert {"error", "code", "message"} <= set(body), body
    return body

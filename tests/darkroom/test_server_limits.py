"""Server limits of `darkroom serve` (darkroom/limits.py): header-read timeout, keep-alive
timeout, a per-IP connection limit and a connection cap, and the websocket frame caps;
one real server with small limits, raw sockets and the `websockets` client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import psutil
import pytest
import websockets

from darkroom.database import Database
from tests.darkroom.serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
HEADER_TIMEOUT_S, KEEP_ALIVE_S, PER_IP, CAP = 1.5, 1.0, 4, 6
SLACK_S = 8.0  # a loaded 2-core box may be late; never early
JWT_SECRET = "limits-test-secret-" + "x" * 32


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@pytest.fixture(scope="module")
def server(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    url = (
        f"postgresql://{database.user}:{database.password}@/{database.dbname}"
        f"?host={database.host}&port={database.port}"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DARKROOM_DB_SCHEMA": schema,
        "DARKROOM_INFERENCE": "off",
        "DARKROOM_JWT_SECRET": JWT_SECRET,
        "DATA_DIR": str(tmp_path_factory.mktemp("limits")),
        "DARKROOM_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "DARKROOM_KEEP_ALIVE_S": str(KEEP_ALIVE_S),
        "DARKROOM_MAX_CONNECTIONS_PER_IP": str(PER_IP),
        "DARKROOM_MAX_CONNECTIONS": str(CAP),
    }
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "darkroom", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(port, proc)
        yield Server(port, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def token() -> str:
    return jwt.encode(
        {"sub": str(uuid.uuid4()), "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256"
    )


def raw_connection(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    sock.settimeout(0.2)
    return sock


def wait_closed(
    sock: socket.socket, limit_s: float, drip: bytes | None = None
) -> tuple[float, bytes]:
    """Seconds until the server closed `sock` (sending `drip` every 0.25 s meanwhile),
    and what it sent before closing."""
    started, received = time.monotonic(), b""
    while time.monotonic() - started < limit_s:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if drip is not None:
                try:
                    sock.sendall(drip)
                except OSError:
                    return time.monotonic() - started, received
            continue
        except OSError:
            return time.monotonic() - started, received
        if not chunk:
            return time.monotonic() - started, received
        received += chunk
    raise AssertionError(f"still open after {limit_s} s (received {received[:200]!r})")


def http_get(port: int, source: str = "127.0.0.1") -> int | None:
    """The status of `GET /health` from `source`, or None when the server closed first."""
    with raw_connection(port, source) as sock:
        sock.settimeout(30)
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            return None
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def test_a_slow_loris_never_finishing_its_headers_is_closed_at_the_header_timeout(
    server: Server,
) -> None:
    with raw_connection(server.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        took, answer = wait_closed(sock, HEADER_TIMEOUT_S + SLACK_S, drip=b"X-Drip: 1\r\n")
    assert took >= HEADER_TIMEOUT_S - 0.1, took
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    # A connection that sends nothing at all is closed the same way, silently.
    with raw_connection(server.port) as sock:
        took, answer = wait_closed(sock, HEADER_TIMEOUT_S + SLACK_S)
    assert took >= HEADER_TIMEOUT_S - 0.1 and answer == b"", (took, answer)


def test_headers_in_time_are_served_and_an_idle_kept_alive_connection_is_closed(
    server: Server,
) -> None:
    with raw_connection(server.port) as sock:
        # Headers in pieces, complete well within the timeout: served.
        for piece in (b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(0.1)
        sock.settimeout(30)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        sock.settimeout(0.2)
        took, _ = wait_closed(sock, KEEP_ALIVE_S + SLACK_S)
    assert KEEP_ALIVE_S - 0.1 <= took < 4.5, took  # uvicorn's default is 5 s


async def _hold(ws_url: str, source: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"{ws_url}?token={token()}", open_timeout=30, local_addr=(source, 0)
    )
    ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert ready["type"] == "ready", ready
    return ws


async def _limits(server: Server) -> None:
    held = [await _hold(server.ws, "127.0.0.1") for _ in range(PER_IP)]
    try:
        # Over the per-IP limit: refused at once, with a 503 (or closed).
        assert await asyncio.to_thread(http_get, server.port) in (503, None)
        with pytest.raises((websockets.InvalidStatus, websockets.InvalidHandshake, OSError)):
            await _hold(server.ws, "127.0.0.1")
        # Another address may still connect, up to the cap of the whole server.
        held += [await _hold(server.ws, "127.0.0.2") for _ in range(CAP - PER_IP)]
        assert await asyncio.to_thread(http_get, server.port, "127.0.0.3") in (503, None)
        # One closes: its address may connect again (after the refused ones linger out).
        await held.pop(0).close()
        deadline = time.monotonic() + SLACK_S + 5
        while (status := await asyncio.to_thread(http_get, server.port)) != 200:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.3)
    finally:
        for ws in held:
            await ws.close()


def test_connections_over_the_per_ip_limit_or_the_cap_are_refused(server: Server) -> None:
    asyncio.run(_limits(server))


async def _close_code(ws_url: str, frame: str) -> tuple[int | None, float]:
    async with websockets.connect(ws_url, open_timeout=30, max_size=None) as ws:
        started = time.monotonic()
        try:
            await asyncio.wait_for(ws.send(frame), 30)
            await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), 30)
        return ws.close_code, time.monotonic() - started


def test_an_oversized_auth_frame_closes_1009_and_does_not_grow_the_server(server: Server) -> None:
    frame = json.dumps({"type": "auth", "token": "x" * 20_000})
    assert asyncio.run(_close_code(server.ws, frame))[0] == 1009

    # A small auth frame is still read and answered.
    async def auth_frame() -> str:
        async with websockets.connect(server.ws, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token()}))
            return str(json.loads(await asyncio.wait_for(ws.recv(), 30))["type"])

    assert asyncio.run(auth_frame()) == "ready"
    process = psutil.Process(server.proc.pid)
    before = process.memory_info().rss
    huge = json.dumps({"type": "auth", "token": "x" * 15_000_000})
    for _ in range(3):
        code, took = asyncio.run(_close_code(server.ws, huge))
        assert code == 1009 and took < 20, (code, took)
    grown = process.memory_info().rss - before
    # Three 15 MB frames: refused on their header, never buffered (was +29 MB for one).
    assert grown < 8 * 1024 * 1024, grown


def test_a_request_head_growing_past_16_kib_unfinished_is_refused_400(server: Server) -> None:
    with raw_connection(server.port) as sock:
        sock.settimeout(30)
        # 20 x 1 KiB header lines, never the blank line: one write (one loopback
        # segment), so the server reads all of it before answering and closing.
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\n" + (b"X-Pad: " + b"a" * 1015 + b"\r\n") * 20
        )
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]

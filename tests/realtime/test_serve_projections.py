"""`darkroom serve` keeps its views current when the projections writer process dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.realtime.api_harness import Server, ok, server

__all__ = ["server"]

pytestmark = pytest.mark.timeout(120)


def writers_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"projections.engine.writer" in cmdline:
                found.append(int(child))
    return found


def test_a_killed_writer_process_is_replaced_and_the_views_catch_up(server: Server) -> None:
    alice = server.user()
    first = ok(alice.post("/api/projects", json={"name": "Before"}), 201)
    ok(alice.get(f"/api/projects/{first['id']}?min_position={first['position']}"))
    [writer] = writers_of(server.process.pid)

    os.kill(writer, signal.SIGKILL)
    second = ok(alice.post("/api/projects", json={"name": "After"}), 201)
    deadline = time.monotonic() + 60
    while True:  # the runner stops, and a fresh one starts after a 1 s backoff
        response = alice.get(f"/api/projects/{second['id']}?min_position={second['position']}")
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ok(response)["name"] == "After"
    assert writers_of(server.process.pid) not in ([], [writer])

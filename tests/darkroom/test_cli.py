"""The CLI and the served studio, as a person or a program would use them."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import pytest
import websockets

from darkroom.database import Database
from darkroom.settings import Settings
from darkroom.wiring import build_studio
from domain.studio import Studio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def studio(database: Database, schema: str) -> Iterator[Studio]:
    app = build_studio(database, schema, pool_size=2)
    yield app
    app.close()


@pytest.fixture(scope="module")
def env(database: Database, schema: str) -> dict[str, str]:
    url = (
        f"postgresql://{database.user}:{database.password}@/{database.dbname}"
        f"?host={database.host}&port={database.port}"
    )
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DARKROOM_DB_SCHEMA": schema,
        "COLUMNS": "250",
        # Inference (a local Ray) is covered by tests/inference/test_e2e_serve.py.
        "DARKROOM_INFERENCE": "off",
    }


def darkroom(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "darkroom", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_history_lists_every_event_with_position_actor_and_correlation(
    studio: Studio, env: dict[str, str]
) -> None:
    project_id = studio.create_project("alice", "Film")["project_id"]
    studio.update_project(project_id, "alice", name="Film II")
    lines = [json.loads(x) for x in darkroom(env, "history", project_id, "--json").splitlines()]
    assert [x["topic"] for x in lines] == ["darkroom.project.created", "darkroom.project.updated"]
    assert all(x["position"] and x["correlation_id"] and x["actor"] for x in lines)
    assert "darkroom.project.updated" in darkroom(env, "history", project_id)


def test_history_lists_snapshots_apart_from_the_events(studio: Studio, env: dict[str, str]) -> None:
    project_id = studio.create_project("alice", "Long")["project_id"]
    for i in range(60):
        studio.update_project(project_id, "alice", name=f"Long {i}")
    assert studio.flush_snapshots()
    lines = [
        json.loads(x)
        for x in darkroom(env, "history", project_id, "--json", "--snapshots").splitlines()
    ]
    events = [x for x in lines if "topic" in x]
    snapshots = [x for x in lines if x.get("kind") == "snapshot"]
    assert len(events) == 61 and all(x["topic"].startswith("darkroom.project") for x in events)
    assert [(x["version"], x["usable"]) for x in snapshots] == [(50, True)]
    assert len(darkroom(env, "history", project_id, "--json").splitlines()) == 61
    table = darkroom(env, "history", project_id)
    assert "snapshots (cached state, not events)" in table
    assert (
        json.loads(darkroom(env, "show", project_id, "--version", "55", "--json"))["name"]
        == "Long 53"
    )


def test_show_prints_an_aggregate_as_it_was_at_a_version_or_a_moment(
    studio: Studio, env: dict[str, str]
) -> None:
    project_id = studio.create_project("alice", "Before")["project_id"]
    moment = datetime.now(UTC).isoformat()
    studio.update_project(project_id, "alice", name="After")
    assert (
        json.loads(darkroom(env, "show", project_id, "--version", "1", "--json"))["name"]
        == "Before"
    )
    assert (
        json.loads(darkroom(env, "show", project_id, "--at", moment, "--json"))["name"] == "Before"
    )
    assert json.loads(darkroom(env, "show", project_id, "--json"))["name"] == "After"


def test_events_tails_the_log_as_json_lines_from_a_position(
    studio: Studio, env: dict[str, str]
) -> None:
    since = studio.head_position()
    studio.create_project("bob", "Tail")
    lines = [json.loads(x) for x in darkroom(env, "events", "--since", str(since)).splitlines()]
    assert [x["position"] for x in lines] == list(range(since + 1, studio.head_position() + 1))


async def _ws_ready(port: int) -> dict[str, object]:
    token = jwt.encode(
        {
            "sub": "5d8e2c1a-0c7b-4a53-9c1e-ca401ca401ca",  # carol: ids are UUIDs
            "exp": int(time.time()) + 600,
        },
        Settings().jwt_secret,
        algorithm="HS256",
    )
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}") as ws:
        return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


def test_serve_answers_health_with_the_head_position_and_mounts_the_hub(
    studio: Studio, env: dict[str, str]
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "darkroom", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        assert body["head_position"] == studio.head_position()
        assert asyncio.run(_ws_ready(port))["type"] == "ready"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _serve_once(env: dict[str, str], token: str | None = None) -> int:
    """Start `darkroom serve`, optionally create a project, stop it; the head it reported."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "darkroom", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        if token:
            made = httpx.post(
                f"{base}/api/projects",
                json={"name": "Kept"},
                timeout=10,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert made.status_code == 201, made.text
        return int(httpx.get(f"{base}/health", timeout=5).json()["head_position"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_without_a_database_url_serve_runs_on_an_embedded_postgres_reused_across_runs(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATA_DIR=str(tmp_path), DARKROOM_INFERENCE="off")
    token = jwt.encode(
        {
            "sub": "7b1f0e2d-3a4c-4d5e-8f60-d0ad0ad0ad0a",  # dora: ids are UUIDs
            "exp": int(time.time()) + 600,
        },
        Settings().jwt_secret,
        algorithm="HS256",
    )
    written = _serve_once(env, token)
    assert written > 0 and (tmp_path / "pg" / "PG_VERSION").exists()
    assert _serve_once(env) == written
    # The last process using the embedded server stops it.
    deadline = time.monotonic() + 20
    while (tmp_path / "pg" / "postmaster.pid").exists():
        assert time.monotonic() < deadline, "the embedded PostgreSQL kept running"
        time.sleep(0.2)

"""`DARKROOM_LOG_FORMAT=json`: a real `darkroom serve` writes one JSON object per log line,
one access line per request, and that line's correlation id is the one the command's
events carry in `darkroom history`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from darkroom.database import Database
from realtime.auth import issue_jwt
from tests.darkroom.serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
SECRET = "json-logs-secret-of-at-least-32-bytes!"


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is a JSON object
    assert all(
        isinstance(p, dict) and {"ts", "level", "logger", "message"} <= set(p) for p in parsed
    )
    return parsed


@pytest.mark.timeout(180)
def test_a_json_access_line_carries_the_correlation_id_found_in_darkroom_history(
    database: Database, schema: str, tmp_path: Path
) -> None:
    url = (
        f"postgresql://{database.user}:{database.password}@/{database.dbname}"
        f"?host={database.host}&port={database.port}"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DARKROOM_DB_SCHEMA": schema,
        "DARKROOM_INFERENCE": "off",
        "DARKROOM_JWT_SECRET": SECRET,
        "DARKROOM_LOG_FORMAT": "json",
        "DATA_DIR": str(tmp_path),
    }
    port = free_port()
    err = tmp_path / "stderr.log"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "darkroom", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=stderr,
            stderr=stderr,
        )
    user = str(uuid.uuid4())
    token = issue_jwt(SECRET, user)
    try:
        wait_until_serving(port, proc)
        made = httpx.post(
            f"http://127.0.0.1:{port}/api/projects?access_token={token}",
            json={"name": "logged"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        correlation, project = made.headers["x-correlation-id"], made.json()["id"]
        deadline = time.monotonic() + 10
        while correlation not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    logged = [
        line
        for line in log_lines(err)
        if line["logger"] == "darkroom.access" and line.get("correlation_id") == correlation
    ]
    assert len(logged) == 1
    line = logged[0]
    assert (line["method"], line["route"], line["path"], line["status"]) == (
        "POST",
        "/api/projects",
        "/api/projects",
        201,
    )
    assert line["actor"] == f"user:{user}"
    assert line["duration_ms"] > 0
    history = subprocess.run(
        [sys.executable, "-m", "darkroom", "history", project, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert history.returncode == 0, history.stderr
    events = [json.loads(row) for row in history.stdout.splitlines() if row.strip()]
    assert events
    assert {(e["correlation_id"], e["actor"]) for e in events} == {(correlation, line["actor"])}
    assert token not in err.read_text()  # redaction still applies to JSON lines

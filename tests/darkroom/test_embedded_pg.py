"""The embedded PostgreSQL outlives no crash: after SIGKILLed servers, the next clean
stop of the last process stops it; `darkroom db status|stop` for an operator.

Each test has its own DATA_DIR (so its own PostgreSQL): the session's server in
`.darkroom/test-pg` is never touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.darkroom.serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATA_DIR=str(tmp_path), DARKROOM_INFERENCE="off", DARKROOM_SWEEP_INTERVAL_S="0")
    return env


def darkroom(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "darkroom", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not check or done.returncode == 0, done.stderr
    return done


def status(env: dict[str, str]) -> dict[str, object]:
    return dict(json.loads(darkroom(env, "db", "status", "--json").stdout))


def postgres_of(pg_dir: Path) -> list[psutil.Process]:
    """Live postgres processes serving `pg_dir` (the postmaster names it on its command line)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        info = process.info
        if (
            info["name"] == "postgres"
            and info["status"] != psutil.STATUS_ZOMBIE
            and str(pg_dir) in " ".join(info["cmdline"] or ())
        ):
            found.append(process)
    return found


def start_serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "darkroom", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_serving(port, proc)
    return proc


def wait_gone(pg_dir: Path, seconds: float = 30) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := postgres_of(pg_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture()
def pg_dir(env: dict[str, str]) -> Iterator[Path]:
    path = (Path(env["DATA_DIR"]) / "pg").resolve()
    yield path
    # Whatever happened, leave no server of ours behind.
    if postgres_of(path):
        darkroom(env, "db", "stop", "--force", check=False)
    for process in postgres_of(path):
        process.kill()


@pytest.mark.timeout(150)
def test_after_three_sigkilled_servers_a_clean_stop_stops_postgres(
    env: dict[str, str], pg_dir: Path
) -> None:
    for _ in range(3):
        proc = start_serve(env)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    # The crashes left PostgreSQL running with nobody alive attached.
    before = status(env)
    assert before["running"] and before["attached"] == [], before
    assert postgres_of(pg_dir)

    last = start_serve(env)
    joined = status(env)
    assert joined["running"] and joined["attached"] == [last.pid], joined

    last.send_signal(signal.SIGTERM)
    assert last.wait(timeout=60) == 0
    assert wait_gone(pg_dir) == [], "PostgreSQL outlived the last clean stop"
    # Joining pruned the three dead pids (and leaving removed the last one).
    assert joined["stale"] == [], joined
    after = status(env)
    assert not after["running"] and after["attached"] == [] and after["stale"] == [], after


@pytest.mark.timeout(120)
def test_db_stop_stops_a_server_left_by_a_crash_and_refuses_while_one_is_attached(
    env: dict[str, str], pg_dir: Path
) -> None:
    assert darkroom(env, "db", "stop").stdout.startswith("not running")
    proc = start_serve(env)
    try:
        refused = darkroom(env, "db", "stop", check=False)
        assert refused.returncode == 1 and str(proc.pid) in refused.stderr
        assert postgres_of(pg_dir)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    shown = status(env)
    assert shown["running"] and shown["data_dir"] == str(pg_dir) and shown["attached"] == []
    assert isinstance(shown["pid"], int) and psutil.Process(shown["pid"]).name() == "postgres"
    assert "stopped PostgreSQL" in darkroom(env, "db", "stop").stdout
    assert wait_gone(pg_dir, 10) == []
    assert status(env)["running"] is False
    # And it starts again as usual afterwards.
    again = start_serve(env)
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=60) == 0
    assert wait_gone(pg_dir) == []


def test_db_commands_refuse_an_external_database(env: dict[str, str]) -> None:
    external = {**env, "DATABASE_URL": "postgresql://nobody@/nothing?host=/nonexistent"}
    for command in ("status", "stop"):
        done = darkroom(external, "db", command, check=False)
        assert done.returncode == 2 and "DATABASE_URL" in done.stderr


def test_a_new_embedded_server_takes_more_connections_than_postgres_default(
    env: dict[str, str], pg_dir: Path
) -> None:
    script = (
        "import sys, psycopg; from pathlib import Path; "
        "from darkroom.database import embedded; db = embedded(Path(sys.argv[1])); "
        "c = psycopg.connect(host=db.host, port=db.port, user=db.user, dbname=db.dbname); "
        "print(c.execute('show max_connections').fetchone()[0]); c.close()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(pg_dir)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) >= 300
    assert wait_gone(pg_dir) == []

"""The writer process: batches committed in a child, errors and deaths reported, no orphan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from projections import all_views, db
from projections.engine.runner import Runner
from projections.engine.writer import Batch, WriterProcess
from projections.engine.writes import Insert
from projections.errors import SkippedBatchError, WriterGoneError
from tests.projections.conftest import scratch_fold, snapshot_tables, studio_env
from tests.projections.workload import Workload, steps

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_an_error_in_the_writer_is_raised_in_the_runner_as_the_same_psycopg_error(database, schema):
    with db.connect(database.conninfo, schema) as conn:
        db.ensure_meta(conn)  # the tracking table every batch updates
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY)")
    good = Batch(2, [("v", 1, {"t": "probe"}, [Insert("t", ("id",), [{"id": 1}])])], [], [], [])
    bad = Batch(
        1, [("v", 1, {"t": "no_such_table"}, [Insert("t", ("id",), [{"id": 1}])])], [], [], []
    )
    writer = WriterProcess(database.conninfo, schema)
    try:
        writer.submit(bad)
        writer.submit(good)  # queued behind the failing one
        with pytest.raises(psycopg.errors.UndefinedTable, match="no_such_table"):
            writer.wait()
        # Committing it would record a later position without the failed rows.
        with pytest.raises(SkippedBatchError):
            writer.wait()
        assert probe_rows(database, schema) == []
        writer.submit(good)  # once the runner has recovered, the child goes on
        writer.wait()
        assert probe_rows(database, schema) == [(1,)]
    finally:
        writer.close()


def probe_rows(database, schema) -> list[tuple[int]]:
    with psycopg.connect(database.conninfo) as conn:
        return conn.execute(f'SELECT id FROM "{schema}".probe').fetchall()


def test_a_killed_writer_stops_the_runner_and_a_new_runner_resumes_exactly(app, database, schema):
    workload = Workload(app, seed=21)
    steps(workload, 400)
    head = app.head_position()
    runner = Runner(app, database.conninfo, schema, all_views(), batch_size=10)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner.catch_up(stop_at=head)
        except BaseException as error:
            failure.append(error)

    with runner:
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 30
        while runner.batches < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert runner._process is not None and runner._process._process is not None
        os.kill(runner._process._process.pid, signal.SIGKILL)
        thread.join(30)
    assert failure and isinstance(failure[0], WriterGoneError), failure
    assert runner.committed < head

    with Runner(app, database.conninfo, schema, all_views()) as fresh:
        assert fresh.catch_up(stop_at=head) == head
    assert snapshot_tables(database, schema) == scratch_fold(app, database, head)


def test_the_writer_process_dies_with_its_runner(app, database, schema):
    workload = Workload(app, seed=22)
    steps(workload, 100)
    spec = {
        "env": studio_env(database, schema),
        "conninfo": database.conninfo,
        "schema": schema,
        "batch_size": 10,
        "batch_latency": 0.01,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.projections.runner_process", json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 30
        children: list[int] = []
        while not children and time.monotonic() < deadline:
            time.sleep(0.1)
            children = children_of(process.pid)
        assert children, "the runner started no writer process"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 5
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(c) for c in children)


def test_the_writer_keeps_its_freed_memory_unless_the_operator_set_malloc_otherwise(
    database, schema, monkeypatch
):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    writer = WriterProcess(database.conninfo, schema)
    try:
        writer.start()
        assert writer._process is not None
        raw = Path(f"/proc/{writer._process.pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        assert env["MALLOC_MMAP_THRESHOLD_"] == str(64 << 20)
        assert env["MALLOC_TRIM_THRESHOLD_"] == "12345"
    finally:
        writer.close()

"""Rebuild: a view is rebuilt into a new version while commands keep arriving and queries
keep being served, then switched atomically; the result equals a from-scratch fold."""

from __future__ import annotations

import threading
import time

import pytest

from projections import all_views, db
from projections.engine import ops
from projections.engine.runner import Runner
from projections.reading import wait_for_position
from projections.views.gallery import gallery_page
from tests.projections.conftest import scratch_fold, snapshot_tables
from tests.projections.workload import Workload, run_in_thread, steps

pytestmark = pytest.mark.timeout(180)


def serve_queries(database, schema, project_id, stop, served, errors) -> threading.Thread:
    def loop() -> None:
        with db.connect(database.conninfo, schema) as conn:
            while not stop.is_set():
                try:
                    gallery_page(conn, project_id, limit=20)
                    served.append(1)
                except Exception as error:
                    errors.append(error)
                time.sleep(0.002)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_rebuilding_while_commands_arrive_switches_without_downtime_to_an_identical_view(
    app, database, schema, conn
):
    workload = Workload(app, seed=9)
    steps(workload, 300)
    live = Runner(app, database.conninfo, schema, all_views(), batch_latency=0.02)
    live_thread = threading.Thread(target=live.run_forever, daemon=True)
    live_thread.start()
    stop, errors, query_errors, served = threading.Event(), [], [], []
    try:
        wait_for_position(conn, app.head_position(), timeout=60)
        writer = run_in_thread(workload, stop, errors)
        reader = serve_queries(database, schema, workload.project, stop, served, query_errors)
        seen: list[int] = []
        version = ops.rebuild(
            app,
            database.conninfo,
            schema,
            "gallery",
            progress=lambda position, head: seen.append(position),
        )
        time.sleep(0.3)  # commands keep arriving after the switch too
        stop.set()
        writer.join(30)
        reader.join(30)
        head = app.head_position()
        wait_for_position(conn, head, timeout=60)
    finally:
        stop.set()
        live.stop()
        live_thread.join(30)
        live.close()

    assert not errors and not query_errors, (errors, query_errors)
    assert served and seen
    assert version == 2
    row = db.registry(conn, ["gallery"])["gallery"]
    assert (row["active_version"], row["handover_state"]) == (2, None)
    tables = {
        r["tablename"]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    }
    assert "gallery_v2" in tables and "gallery_v1" not in tables
    assert snapshot_tables(database, schema) == scratch_fold(app, database, head)


def test_rebuilding_without_a_live_runner_switches_by_itself(app, database, schema, conn):
    workload = Workload(app, seed=3)
    steps(workload, 50)
    runner = Runner(app, database.conninfo, schema, all_views())
    with runner:
        runner.catch_up()
    before = db.registry(conn, ["shots"])["shots"]["active_version"]
    version = ops.rebuild(app, database.conninfo, schema, "shots")
    assert version == before + 1
    assert ops.status(app, conn)[0]["lag_events"] >= 0
    with Runner(app, database.conninfo, schema, all_views()) as runner:
        runner.catch_up()
    head = app.head_position()
    assert snapshot_tables(database, schema) == scratch_fold(app, database, head)

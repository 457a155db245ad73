"""What keeping the views up to date costs at the head of the log (issue 17): one JSON
statement per table written, stored exactly as COPY stored it; one read of the log per
append, not two."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from domain.studio import Studio
from projections import all_views, db
from projections.engine import fastio
from projections.engine.runner import Runner
from projections.engine.writes import Delete, Insert, Upsert, apply
from projections.reading import wait_for_position
from tests.projections.conftest import studio_env

pytestmark = pytest.mark.timeout(120)

COLUMNS = ("id", "ids", "doc", "at", "amount", "flag", "n", "name")
TABLE = """CREATE TABLE probe_types (
    id uuid PRIMARY KEY, ids uuid[] NOT NULL, doc jsonb, at timestamptz, amount numeric,
    flag boolean, n int, name text)"""


def stored(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    rows = conn.execute("SELECT * FROM probe_types").fetchall()
    return {str(row["id"]): row for row in rows}


def test_upserts_and_inserts_store_each_column_type_the_views_write(database, schema):
    first, second, member = str(uuid4()), str(uuid4()), str(uuid4())
    when = datetime(2026, 12, 5, 1, 30, 15, 123456, tzinfo=UTC)
    fresh = {
        "id": first,
        "ids": [member, second],
        "doc": {"prompt": "nul \x00 here", "raw": "a \\u0000 b", "n": [1, 2.5, None]},
        "at": when.isoformat(),
        "amount": "12.50",
        "flag": True,
        "n": 7,
        "name": 'a\x00b "quoted" \\ tab\t',
        "extra": "a key that is not a column",
    }
    plain = {
        "id": second,
        "ids": [],
        "doc": None,
        "at": None,
        "amount": None,
        "flag": False,
        "n": None,
        "name": "{json-looking}",
    }
    with db.connect(database.conninfo, schema) as conn:
        conn.execute(TABLE)
        with conn.transaction():
            cur = conn.cursor()
            apply(cur, {"t": "probe_types"}, [Insert("t", COLUMNS, [fresh], frozenset({"doc"}))])
            apply(cur, {"t": "probe_types"}, [Upsert("t", COLUMNS, ("id",), [plain])])
        rows = stored(conn)
        assert rows[first]["ids"] == [UUID(member), UUID(second)]
        assert rows[first]["doc"] == {
            "prompt": "nul \ufffd here",
            "raw": "a \\ufffd b",
            "n": [1, 2.5, None],
        }
        assert rows[first]["at"] == when
        assert rows[first]["amount"] == Decimal("12.50")
        assert rows[first]["flag"] is True and rows[first]["n"] == 7
        assert rows[first]["name"] == 'a\ufffdb "quoted" \\ tab\t'
        assert rows[second]["ids"] == [] and rows[second]["doc"] is None
        assert rows[second]["flag"] is False and rows[second]["name"] == "{json-looking}"

        # Two upserts into one table in one transaction (a view's demoted and promoted
        # rows): the second replaces what the first wrote.
        with conn.transaction():
            cur = conn.cursor()
            changed = {**plain, "name": "renamed", "n": 1}
            apply(cur, {"t": "probe_types"}, [Upsert("t", COLUMNS, ("id",), [changed])])
            apply(
                cur,
                {"t": "probe_types"},
                [Upsert("t", COLUMNS, ("id",), [{**changed, "n": 2}]), Delete("t", "id", [first])],
            )
        rows = stored(conn)
        assert list(rows) == [second]
        assert rows[second]["name"] == "renamed" and rows[second]["n"] == 2


class QuietStudio(Studio):
    """A studio whose log has a channel of its own: the event store's notifications are
    named after the events table, not the schema, so on a shared PostgreSQL every other
    process appending to a `darkroom_events` wakes a runner listening on that channel."""

    name = "HeadCosts"


def test_a_runner_at_the_head_reads_the_log_about_once_per_append(
    database, schema, conn, monkeypatch
):
    app = QuietStudio(env=studio_env(database, schema))
    project_id = str(app.create_project(f"user-{uuid4().hex[:6]}", "P")["project_id"])
    reads = []
    real = fastio.read_page

    def counted(*args: Any, **kwargs: Any) -> list[Any]:
        page = real(*args, **kwargs)
        reads.append(len(page))
        return page

    monkeypatch.setattr(fastio, "read_page", counted)
    runner = Runner(app, database.conninfo, schema, all_views())
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    try:
        wait_for_position(conn, app.head_position(), timeout=30)
        time.sleep(0.3)
        before = len(reads)
        appends = 20
        for i in range(appends):
            app.create_generation(project_id, None, f"{i}.png")
            time.sleep(0.02)  # one at a time: the runner is at the head for each
        wait_for_position(conn, app.head_position(), timeout=30)
    finally:
        runner.stop()
        thread.join(10)
        runner.close()
        app.close()
    # Re-reading at once after every partial page made it two reads per append (the
    # second one empty); the idle tick may add one read per half second.
    assert len(reads) - before <= appends + 4

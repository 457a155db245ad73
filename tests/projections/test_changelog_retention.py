"""Change-log retention: pruning moves the oldest retained position forward."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from darkroom.database import create_schema, drop_schema
from projections import changelog, db
from projections.changelog import changes_since, oldest_retained_position, prune
from projections.engine.tables import prepare
from projections.views.projects import project_row
from tests.projections.conftest import catch_up

pytestmark = pytest.mark.timeout(60)


def test_pruning_drops_old_changes_and_tells_resuming_clients_where_the_log_starts(
    app, database, schema, conn, project_id
):
    app.create_generation(project_id, None, "a.png")
    catch_up(app, database, schema)
    head = app.head_position()
    assert prune(conn, timedelta(days=7)) == 0
    assert oldest_retained_position(conn) == 1

    assert prune(conn, timedelta(0)) > 0
    assert oldest_retained_position(conn) == head + 1
    assert changes_since(conn, [f"project:{project_id}"], 0) == []

    later = app.create_generation(project_id, None, "b.png")
    catch_up(app, database, schema)
    rows = changes_since(conn, [f"project:{project_id}"], head)
    assert rows and all(r["position"] > head for r in rows)
    assert rows[-1]["position"] == later["position"]


def test_changes_already_past_retention_are_not_written(app, database, schema, conn):
    project = app.create_project("old-owner", "old")["project_id"]
    catch_up(app, database, schema, retention=timedelta(0))  # everything is "old"
    assert changes_since(conn, [f"project:{project}"], 0) == []
    assert project_row(conn, project) is not None


def test_an_old_change_log_is_rekeyed_position_first_with_text_payloads_keeping_its_rows(database):
    scratch = f"rekey_{uuid.uuid4().hex[:8]}"
    create_schema(database, scratch)
    try:
        with db.connect(database.conninfo, scratch) as conn:
            conn.execute(
                "CREATE TABLE changelog (position bigint NOT NULL, topic text NOT NULL, "
                "kind text NOT NULL, payload json NOT NULL, created_at timestamptz "
                "NOT NULL DEFAULT now(), PRIMARY KEY (topic, position))"
            )
            conn.execute(
                "INSERT INTO changelog (position, topic, kind, payload) VALUES "
                "(1, 'project:a', 'project.upserted', '{\"name\": \"kept\"}')"
            )
            for statement in changelog.DDL[2:]:  # changelog_state: a complete old deployment
                conn.execute(statement)
            prepare(conn, [], managed=True, versions={})
            key = conn.execute(
                "SELECT array_agg(a.attname::text ORDER BY k.n) AS cols FROM pg_index i "
                "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = 'changelog'::regclass AND i.indisprimary"
            ).fetchone()
            assert key is not None and key["cols"] == ["position", "topic"]
            assert payload_type(conn) == "text"
            rows = changes_since(conn, ["project:a"], 0)
            assert [(r["position"], r["payload"]) for r in rows] == [(1, {"name": "kept"})]
            prepare(conn, [], managed=True, versions={})  # and again: nothing left to do
    finally:
        drop_schema(database, scratch)


def test_a_busy_old_change_log_is_left_as_it_is_and_migrated_on_a_later_start(database):
    scratch = f"busy_{uuid.uuid4().hex[:8]}"
    create_schema(database, scratch)
    try:
        with (
            db.connect(database.conninfo, scratch) as conn,
            db.connect(database.conninfo, scratch) as reader,
        ):
            conn.execute(
                "CREATE TABLE changelog (position bigint NOT NULL, topic text NOT NULL, "
                "kind text NOT NULL, payload json NOT NULL, created_at timestamptz "
                "NOT NULL DEFAULT now(), PRIMARY KEY (topic, position))"
            )
            for statement in changelog.DDL[2:]:
                conn.execute(statement)
            with reader.transaction():  # a relay mid-read holds the table
                reader.execute("SELECT count(*) FROM changelog").fetchone()
                started = time.monotonic()
                prepare(conn, [], managed=True, versions={})
                assert 1.5 < time.monotonic() - started < 10
                assert payload_type(conn) == "json"
            prepare(conn, [], managed=True, versions={})
            assert payload_type(conn) == "text"
    finally:
        drop_schema(database, scratch)


def payload_type(conn) -> str:
    row = conn.execute(
        "SELECT format_type(atttypid, NULL) AS t FROM pg_attribute "
        "WHERE attrelid = 'changelog'::regclass AND attname = 'payload'"
    ).fetchone()
    return row["t"]

"""Fixtures for the read side: a studio writing to the module's schema, view connections,
and a from-scratch fold to compare views with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from darkroom.database import Database, create_schema, drop_schema
from darkroom.eventstore import RECORDER_TOPIC
from domain.studio import Studio
from projections import all_views, db
from projections.engine.runner import Runner


def studio_env(database: Database, schema: str) -> dict[str, str]:
    return {
        **database.eventsourcing_env(schema, pool_size=4),
        "APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC,
        "CREATE_TABLE": "y",
    }


@pytest.fixture(scope="module")
def app(database: Database, schema: str) -> Iterator[Studio]:
    studio = Studio(env=studio_env(database, schema))
    yield studio
    studio.close()


@pytest.fixture
def conn(database: Database, schema: str) -> Iterator[psycopg.Connection[Any]]:
    connection = db.connect(database.conninfo, schema)
    yield connection
    connection.close()


@pytest.fixture
def project_id(app: Studio) -> str:
    return str(app.create_project(f"user-{uuid.uuid4().hex[:6]}", "P")["project_id"])


def catch_up(app: Studio, database: Database, schema: str, **kwargs: Any) -> Runner:
    """Run every view up to the head once (managed, with the change log)."""
    runner = Runner(
        app, database.conninfo, schema, kwargs.pop("views", None) or all_views(), **kwargs
    )
    with runner:
        runner.catch_up()
    return runner


VIEW_TABLES = {
    "projects": "id",
    "gallery": "id",
    "variants": "id",
    "shots": "id",
    "tasks": "id",
    "task_claim_queue": "task_id",
    "credit_balances": "user_id",
    "credit_ledger": "user_id, seq",
}


def snapshot_tables(database: Database, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every view's rows (through the SQL views) and the change log, as text, sorted."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(database.conninfo, options=f"-c search_path={schema}") as conn:
        for table, key in VIEW_TABLES.items():
            out[table] = conn.execute(f"SELECT t::text FROM {table} t ORDER BY {key}").fetchall()
        out["changelog"] = conn.execute(
            # jsonb text: the same JSON value whatever the key order it was written in
            "SELECT position, topic, kind, payload::jsonb::text FROM changelog "
            "ORDER BY position, topic"
        ).fetchall()
    return out


def scratch_fold(app: Studio, database: Database, up_to: int) -> dict[str, Any]:
    """The views folded from position 0 in a schema of their own, up to `up_to`."""
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    create_schema(database, scratch)
    try:
        runner = Runner(app, database.conninfo, scratch, all_views())
        with runner:
            runner.catch_up(stop_at=up_to)
        return snapshot_tables(database, scratch)
    finally:
        drop_schema(database, scratch)

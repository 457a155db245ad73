"""What the group-commit recorder's tests share: recorders on tables of their own, calls
queued behind the table lock so that they share one batch, and a spy on the append calls.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment

from darkroom.database import Database
from darkroom.eventstore import RECORDER_TOPIC, GroupCommitRecorder

TOPICS = {"default": None, "group": RECORDER_TOPIC}
_names = itertools.count(1)

MakeRecorder = Callable[..., ApplicationRecorder]
Call = tuple[str, list[StoredEvent], dict[str, Any]]  # name, events, insert_events kwargs


@pytest.fixture
def make_recorder(database: Database, schema: str) -> Iterator[MakeRecorder]:
    """Builds recorders through PostgresFactory, each on a table of its own."""
    factories: list[PostgresFactory] = []

    def make(kind: str = "group", name: str | None = None) -> ApplicationRecorder:
        env = database.eventsourcing_env(schema, pool_size=4)
        topic = TOPICS[kind]
        if topic:
            env["APPLICATION_RECORDER_TOPIC"] = topic
        factory = PostgresFactory(Environment(name or f"T{next(_names)}", env))
        factories.append(factory)
        return factory.application_recorder()

    yield make
    for factory in factories:
        factory.close()


@pytest.fixture
def group_recorder(make_recorder: MakeRecorder) -> GroupCommitRecorder:
    recorder = make_recorder("group")
    assert isinstance(recorder, GroupCommitRecorder)
    return recorder


def events_for(aggregate_id: uuid.UUID, *versions: int) -> list[StoredEvent]:
    return [StoredEvent(aggregate_id, v, "tests:Event", f'{{"v": {v}}}'.encode()) for v in versions]


def all_ids(recorder: ApplicationRecorder) -> list[int]:
    return [n.id for n in recorder.select_notifications(None, 1_000_000)]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class TableLock:
    """Holds the events table's EXCLUSIVE lock from another connection.

    While held, the leader's batch waits inside PostgreSQL and every later
    call queues up: releasing it makes the next batch hold all of them.
    """

    def __init__(self, database: Database, schema: str, table: str) -> None:
        self.conn = psycopg.connect(database.conninfo)
        self.conn.execute(
            psycopg.sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
                psycopg.sql.Identifier(schema, table)
            )
        )

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


class Calls:
    """Runs insert_events calls in threads and keeps each one's outcome."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = recorder
        self.threads: list[threading.Thread] = []
        self.outcomes: dict[str, Any] = {}

    def start(self, name: str, events: list[StoredEvent], **kwargs: Any) -> None:
        def run() -> None:
            try:
                self.outcomes[name] = self.recorder.insert_events(events, **kwargs)
            except Exception as error:
                self.outcomes[name] = error

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self, timeout: float = 30.0) -> dict[str, Any]:
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a caller was left waiting"
        return self.outcomes


def queue_behind_lock(
    database: Database,
    schema: str,
    recorder: GroupCommitRecorder,
    calls: list[Call],
) -> dict[str, Any]:
    """Make `calls` (after the first) share one batch; returns each call's outcome."""
    lock = TableLock(database, schema, recorder.events_table_name)
    runner = Calls(recorder)
    try:
        first_name, first_events, first_kwargs = calls[0]
        runner.start(first_name, first_events, **first_kwargs)
        wait_until(lambda: recorder._leading and not recorder._pending)
        for name, events, kwargs in calls[1:]:
            runner.start(name, events, **kwargs)
        wait_until(lambda: len(recorder._pending) == len(calls) - 1)
    finally:
        lock.release()
    return runner.join()


def transactions_of(database: Database, schema: str, table: str, ids: list[int]) -> int:
    """How many transactions wrote these rows (rows of one commit share an xmin)."""
    with psycopg.connect(database.conninfo) as conn:
        row = conn.execute(
            psycopg.sql.SQL(
                "SELECT count(DISTINCT xmin::text) FROM {} WHERE notification_id = ANY(%s)"
            ).format(psycopg.sql.Identifier(schema, table)),
            (ids,),
        ).fetchone()
    assert row is not None
    return int(row[0])


class AppendSpy:
    """Counts the append function's calls (batch sizes) and the savepoint fallbacks."""

    def __init__(self, recorder: GroupCommitRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
        self.appends: list[int] = []
        self.isolated = 0
        append, write_isolated = recorder._append, recorder._write_isolated

        def spy_append(curs: Any, batch: list[Any]) -> Any:
            self.appends.append(len(batch))
            return append(curs, batch)

        def spy_isolated(batch: list[Any]) -> Any:
            self.isolated += 1
            return write_isolated(batch)

        monkeypatch.setattr(recorder, "_append", spy_append)
        monkeypatch.setattr(recorder, "_write_isolated", spy_isolated)

"""Group-commit event store recorder: gap-free and fast under concurrent writers.

`GroupCommitRecorder` is a `PostgresApplicationRecorder` whose `insert_events`
hands the caller's stored events to whichever caller thread currently leads
(leader/follower group commit). The leader writes every pending request in ONE
transaction - one call of a server-side function that takes the library's table
lock, NOTIFYs once, inserts all events with one multi-row insert and the
command rows with another - and hands each caller back its own notification
ids. Keeping the table lock keeps commit order equal to notification-id order
across processes (a tailing reader never skips an event); it is just paid once
per batch instead of once per command.

Plug it in with the eventsourcing environment::

    APPLICATION_RECORDER_TOPIC=darkroom.eventstore:GroupCommitRecorder

See docs/EVENTSTORE.md for the design.
"""

from __future__ import annotations

import copy
import json
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal
from psycopg.types.json import Jsonb

RECORDER_TOPIC = "darkroom.eventstore:GroupCommitRecorder"

# Bounds on one transaction: keeps lock hold time, memory and the cost of a
# conflict retry (which redoes the batch request by request) predictable.
MAX_BATCH_REQUESTS = 500
MAX_BATCH_EVENTS = 5_000

_RETRYABLE = (InterfaceError, OperationalError)

# Errors one request can cause by itself (a conflict, a bad value). In a batch
# they are isolated to that request; anything else (connection lost, lock
# timeout) fails the whole batch, and the callers' retry policy takes over.
_REQUEST_ERRORS = (
    IntegrityError, DataError, ProgrammingError, NotSupportedError, TypeError, ValueError,
)
_PSYCOPG_REQUEST_ERRORS = (
    psycopg.IntegrityError, psycopg.DataError, psycopg.ProgrammingError,
    psycopg.NotSupportedError,
)
_TRANSLATIONS: dict[type[psycopg.Error], type[PersistenceError]] = {
    psycopg.IntegrityError: IntegrityError,
    psycopg.DataError: DataError,
    psycopg.ProgrammingError: ProgrammingError,
    psycopg.NotSupportedError: NotSupportedError,
}


class RecorderClosedError(PersistenceError):
    """Raised by `insert_events` after the recorder (or its datastore) was closed."""


class _Request:
    """One caller's `insert_events` call, waiting for a leader to commit it."""

    __slots__ = (
        "command_json",
        "command_key",
        "done",
        "error",
        "error_is_shared",
        "events",
        "kwargs",
        "notification_ids",
        "originator_ids",
        "promoted",
        "states",
        "topics",
        "versions",
        "wake",
    )

    def __init__(self, events: Sequence[StoredEvent], kwargs: dict[str, Any]) -> None:
        self.events = events
        self.kwargs = kwargs
        # Columns are built here, in the caller's thread, while the leader is
        # busy with the previous batch: it keeps Python work off the critical path.
        self.originator_ids = [e.originator_id for e in events]
        self.versions = [e.originator_version for e in events]
        self.topics = [e.topic for e in events]
        self.states = [e.state for e in events]
        self.command_key: str | None = kwargs.get("command_key")
        # Serialised here too, so a result that is not JSON fails this caller
        # alone and never reaches the shared transaction.
        self.command_json: str | None = None
        if self.command_key is not None:
            result = kwargs.get("command_result") or {}
            if not isinstance(result, dict):
                msg = f"command_result must be a dict, not {type(result).__name__}"
                raise TypeError(msg)
            self.command_json = json.dumps(result)
        self.notification_ids: list[int] = []
        self.error: BaseException | None = None
        self.error_is_shared = False
        self.done = False
        self.promoted = False
        # A plain lock held from birth: releasing it wakes the waiting caller.
        # Cheaper than an Event, and wakes exactly one thread.
        self.wake = threading.Lock()
        self.wake.acquire()

    def succeed(self, notification_ids: list[int]) -> None:
        self.notification_ids = notification_ids
        self._finish()

    def fail(self, error: BaseException, *, shared: bool) -> None:
        self.error = error
        self.error_is_shared = shared
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self.wake.release()

    def result(self) -> list[int]:
        """The caller's notification ids, or its error raised in the caller's thread."""
        if self.error is None:
            return self.notification_ids
        if not self.error_is_shared:
            raise self.error
        # Many threads raising one exception object would race on its
        # __traceback__; each gets a copy chained to the original.
        try:
            clone = copy.copy(self.error)
        except Exception:  # pragma: no cover - exotic exception types
            raise self.error from None
        raise clone from self.error


class GroupCommitRecorder(PostgresApplicationRecorder):
    """Application recorder that commits concurrent `insert_events` calls together.

    Semantics per call are those of the library's recorder: the caller gets the
    notification ids of its own events, in order, or an `IntegrityError` when
    its own events (or command key) conflict; batchmates are unaffected.

    Extra keyword arguments of `insert_events` (and so of `Application.save`):
    `command_key` (str) and `command_result` (JSON-able dict) record the
    command's outcome in `{events_table}_commands`, atomically with its events.
    """

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.commands_table_name = f"{events_table_name}_commands"
        self.append_function_name = f"{events_table_name}_append"
        self.check_identifier_length(self.commands_table_name)
        self.check_identifier_length(self.append_function_name)
        self._lock_timeout = f"{self.datastore.lock_timeout}s"
        # Subclasses may write more rows per call through the library's hook
        # (e.g. tracking records); only then does a batch need BEGIN/COMMIT.
        self._has_insert_hook = (
            type(self)._insert_events is not PostgresApplicationRecorder._insert_events
        )
        self._build_statements()
        self._mutex = threading.Lock()
        self._idle = threading.Condition(self._mutex)
        self._pending: deque[_Request] = deque()
        self._leading = False
        self._closed = False
        _add_close_hook(datastore, self)

    # ------------------------------------------------------------------ SQL

    def _build_statements(self) -> None:
        schema = Identifier(self.datastore.schema)
        events = Identifier(self.events_table_name)
        commands = Identifier(self.commands_table_name)
        append = Identifier(self.append_function_name)
        id_type = Identifier(self.datastore.originator_id_type)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{commands} ("
                "key text PRIMARY KEY, "
                "result jsonb NOT NULL, "
                "position bigint, "
                "created_at timestamptz DEFAULT now())"
            ).format(schema=schema, commands=commands)
        )
        # The whole batch in one server-side call: lock, notify, insert events,
        # insert command rows. Called alone on an autocommit connection it is
        # its own transaction, so a batch costs one round trip.
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{append}("
                "p_originator_ids {id_type}[], p_versions bigint[], "
                "p_topics text[], p_states bytea[], "
                "p_keys text[], p_results jsonb[], p_last_event int[], "
                "p_lock_timeout text) "
                "RETURNS bigint[] LANGUAGE plpgsql AS $$ "
                "DECLARE v_ids bigint[]; v_head bigint; "
                "BEGIN "
                "  IF cardinality(p_originator_ids) > 0 THEN "
                # The library's EXCLUSIVE table lock, kept on purpose: commit
                # order then equals id order for every writer, in every process.
                "    PERFORM set_config('lock_timeout', p_lock_timeout, true); "
                "    LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE; "
                "    PERFORM pg_notify({channel}, ''); "
                "    WITH inserted AS ("
                "      INSERT INTO {schema}.{events} "
                "      (originator_id, originator_version, topic, state) "
                "      SELECT * FROM unnest(p_originator_ids, p_versions, p_topics, p_states) "
                "      RETURNING notification_id) "
                "    SELECT array_agg(notification_id) INTO v_ids FROM inserted; "
                "  END IF; "
                "  IF cardinality(p_keys) > 0 THEN "
                # A command that stored no events gets the log's head as its
                # position: a replay can still wait on it (read your writes).
                # Every id below a committed id is committed (table lock).
                "    IF 0 = ANY(p_last_event) THEN "
                "      SELECT max(notification_id) INTO v_head FROM {schema}.{events}; "
                "    END IF; "
                # p_last_event holds 1-based indexes into v_ids; 0: no events.
                "    INSERT INTO {schema}.{commands} (key, result, position) "
                "    SELECT k, r, CASE WHEN i > 0 THEN v_ids[i] ELSE coalesce(v_head, 0) END "
                "    FROM unnest(p_keys, p_results, p_last_event) AS c(k, r, i); "
                "  END IF; "
                "  RETURN coalesce(v_ids, '{{}}'); "
                "END $$"
            ).format(
                schema=schema, events=events, commands=commands, append=append,
                id_type=id_type, channel=Literal(self.channel_name),
            )
        )
        # Binary column arrays: psycopg dumps lists of uuid/int/str/bytes in C.
        self.sql_call_append = SQL(
            "SELECT {schema}.{append}(%b::{id_type}[], %b::bigint[], %b::text[], "
            "%b::bytea[], %b::text[], %b::jsonb[], %b::int[], %s) AS ids"
        ).format(schema=schema, append=append, id_type=id_type)
        self.sql_head_position = SQL(
            "SELECT COALESCE(MAX(notification_id), 0) AS head FROM {schema}.{events}"
        ).format(schema=schema, events=events)
        self.sql_select_history = SQL(
            "SELECT notification_id, originator_version, topic, state "
            "FROM {schema}.{events} WHERE originator_id = %s ORDER BY originator_version"
        ).format(schema=schema, events=events)
        self.sql_command_result = SQL(
            "SELECT result, position FROM {schema}.{commands} WHERE key = %s"
        ).format(schema=schema, commands=commands)

    # --------------------------------------------------------------- writing

    @retry(_RETRYABLE, max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Record `stored_events` (and an optional command row) in a shared transaction.

        Blocks until the batch holding this call has committed. Returns this
        call's notification ids in order; raises `IntegrityError` when this
        call's events or `command_key` conflict with stored rows or batchmates.
        """
        if not stored_events and all(value is None for value in kwargs.values()):
            return []
        request = _Request(stored_events, kwargs)
        self._submit(request)
        return request.result()

    def _submit(self, request: _Request) -> None:
        with self._mutex:
            if self._closed:
                msg = "GroupCommitRecorder is closed"
                raise RecorderClosedError(msg)
            self._pending.append(request)
            lead = not self._leading
            self._leading = True
        if not lead:
            # Woken when our batch is done, or when we are promoted to leader.
            try:
                request.wake.acquire()
            except BaseException:
                self._abandon(request)
                raise
            if request.done:
                return
        self._lead(request)

    def _abandon(self, request: _Request) -> None:
        # A waiting caller was interrupted (KeyboardInterrupt): withdraw its
        # request if it was not taken yet, and never sit on leadership we were
        # handed, or every later caller would wait forever.
        with self._mutex:
            if request in self._pending:
                self._pending.remove(request)
            promoted = request.promoted and not request.done
        if promoted:
            self._hand_off()

    def _lead(self, own: _Request) -> None:
        """Commit batches until our own request is done, then pass leadership on."""
        try:
            while not own.done:
                batch = self._next_batch()
                assert batch, "a leader's own request is pending until done"
                self._commit_batch(batch)
        finally:
            self._hand_off()

    def _next_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        n_events = 0
        with self._mutex:
            while self._pending and len(batch) < MAX_BATCH_REQUESTS:
                size = len(self._pending[0].events)
                if batch and n_events + size > MAX_BATCH_EVENTS:
                    break
                batch.append(self._pending.popleft())
                n_events += size
        return batch

    def _hand_off(self) -> None:
        with self._mutex:
            if self._pending:
                successor = self._pending[0]
                successor.promoted = True
                successor.wake.release()
            else:
                self._leading = False
                self._idle.notify_all()

    def _commit_batch(self, batch: list[_Request]) -> None:
        """Write a batch; every request in it ends done, whatever happens."""
        try:
            try:
                outcomes = self._write_together(batch)
            except _REQUEST_ERRORS as error:
                if len(batch) == 1:
                    batch[0].fail(error, shared=False)
                    return
                # Someone's bad request aborted the shared transaction: redo it
                # with a savepoint per request so only that caller fails.
                outcomes = self._write_isolated(batch)
        except BaseException as error:
            for request in batch:
                if not request.done:
                    request.fail(error, shared=True)
            if not isinstance(error, Exception):
                raise
            return
        for request, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                request.fail(outcome, shared=False)
            else:
                request.succeed(outcome)

    def _write_together(self, batch: list[_Request]) -> list[list[int] | BaseException]:
        """All requests in one transaction: one statement, one round trip."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if self._has_insert_hook:
                with conn.transaction():
                    for request in batch:
                        self._insert_events(curs, request.events, **request.kwargs)
                    ids = self._append(curs, batch)
            else:
                ids = self._append(curs, batch)  # autocommit: its own transaction
        return list(_split(ids, [len(request.events) for request in batch]))

    def _write_isolated(self, batch: list[_Request]) -> list[list[int] | BaseException]:
        """One transaction with a savepoint per request; a bad request fails alone."""
        outcomes: list[list[int] | BaseException] = []
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            for request in batch:
                try:
                    with conn.transaction():
                        self._insert_events(curs, request.events, **request.kwargs)
                        outcomes.append(self._append(curs, [request]))
                except _PSYCOPG_REQUEST_ERRORS as error:
                    outcomes.append(_translated(error))
                except _REQUEST_ERRORS as error:
                    outcomes.append(error)
        return outcomes

    def _append(self, curs: Cursor[DictRow], batch: Sequence[_Request]) -> list[int]:
        """Call the append function for `batch`; returns the ids of all its events."""
        originator_ids: list[Any] = []
        versions: list[int] = []
        topics: list[str] = []
        states: list[bytes] = []
        keys: list[str] = []
        results: list[Jsonb] = []
        last_event: list[int] = []
        for request in batch:
            originator_ids += request.originator_ids
            versions += request.versions
            topics += request.topics
            states += request.states
            if request.command_key is not None:
                keys.append(request.command_key)
                results.append(Jsonb(request.command_json, dumps=_identity))
                last_event.append(len(originator_ids) if request.events else 0)
        curs.execute(
            self.sql_call_append,
            (originator_ids, versions, topics, states, keys, results, last_event,
             self._lock_timeout),
            prepare=True,
        )
        row = curs.fetchone()
        assert row is not None
        ids: list[int] = row["ids"]
        if len(ids) != len(originator_ids):  # pragma: no cover - would be a server bug
            msg = f"Expected {len(originator_ids)} notification ids, got {len(ids)}"
            raise PersistenceError(msg)
        return ids

    # --------------------------------------------------------------- reading

    @retry(_RETRYABLE, max_attempts=10, wait=0.2)
    def head_position(self) -> int:
        """The highest notification id stored (0 when the log is empty)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_head_position, prepare=True)
            row = curs.fetchone()
            assert row is not None
            return int(row["head"])

    @retry(_RETRYABLE, max_attempts=10, wait=0.2)
    def select_history(self, originator_id: Any) -> list[dict[str, Any]]:
        """Every stored event of one aggregate, ordered by version (for audits)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_select_history, (originator_id,), prepare=True)
            return [
                {
                    "notification_id": row["notification_id"],
                    "originator_version": row["originator_version"],
                    "topic": row["topic"],
                    "state": bytes(row["state"]),
                }
                for row in curs.fetchall()
            ]

    @retry(_RETRYABLE, max_attempts=10, wait=0.2)
    def command_result(self, key: str) -> dict[str, Any] | None:
        """The result stored for command `key`, with its `"position"`; None if unknown.

        The position is the last notification id the command stored, or the
        log's head when it committed if it stored no events.
        """
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_command_result, (key,), prepare=True)
            row = curs.fetchone()
        if row is None:
            return None
        return {**row["result"], "position": row["position"]}

    # -------------------------------------------------------------- closing

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new writes and wait (up to `timeout` s) for queued ones to commit."""
        with self._mutex:
            self._closed = True
            self._idle.wait_for(lambda: not self._leading, timeout)


def _split(ids: list[int], sizes: list[int]) -> list[list[int]]:
    parts: list[list[int]] = []
    start = 0
    for size in sizes:
        parts.append(ids[start : start + size])
        start += size
    return parts


def _translated(error: psycopg.Error) -> PersistenceError:
    """The eventsourcing error PostgresDatastore.get_connection() would raise."""
    for psycopg_type, translated_type in _TRANSLATIONS.items():
        if isinstance(error, psycopg_type):
            translated = translated_type(str(error))
            translated.__cause__ = error
            return translated
    raise AssertionError(error)  # pragma: no cover - only isolatable errors get here


def _identity(text: str) -> str:
    return text


def _add_close_hook(datastore: PostgresDatastore, recorder: GroupCommitRecorder) -> None:
    """Make `datastore.close()` (called by `Application.close()`) close the recorder first.

    The library gives recorders no close callback, so the datastore's bound
    `close` is wrapped on this instance. A weak reference keeps the recorder
    collectable.
    """
    recorder_ref = weakref.ref(recorder)
    close_datastore: Callable[[], None] = datastore.close

    def close() -> None:
        live = recorder_ref()
        if live is not None:
            live.close()
        close_datastore()

    datastore.close = close  # type: ignore[method-assign]


__all__ = ["RECORDER_TOPIC", "GroupCommitRecorder", "RecorderClosedError"]

"""Group-commit event store recorder: gap-free and fast under concurrent writers.

`GroupCommitRecorder` is a `PostgresApplicationRecorder` whose `insert_events`
hands the caller's stored events to whichever caller thread currently leads
(leader/follower group commit). The leader writes every pending request in ONE
transaction - one call of a server-side function that takes the library's table
lock, NOTIFYs once, inserts all events with one multi-row insert and the
command rows with another - and hands each caller back its own notification
ids. Requests that conflict (a version or command key already stored, or taken
by an earlier batchmate) are left out by that same call and get IntegrityError,
so a hot aggregate costs its batchmates nothing. Keeping the table lock keeps
commit order equal to notification-id order across processes (a tailing reader
never skips an event); it is just paid once per batch instead of once per
command.

Plug it in with the eventsourcing environment::

    APPLICATION_RECORDER_TOPIC=darkroom.eventstore:GroupCommitRecorder

The SQL (the commands table, the append function) and the reads are in
`darkroom/eventstore_sql.py` (`CommandRecorder`, this class's base); one caller's
request and the batch's key arithmetic in `darkroom/eventstore_batch.py`. See
docs/EVENTSTORE.md for the design.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from eventsourcing.persistence import (
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from darkroom.eventstore_batch import (
    PSYCOPG_REQUEST_ERRORS,
    REQUEST_ERRORS,
    Request,
    conflict,
    identity,
    shared_keys,
    split,
    translated,
)
from darkroom.eventstore_sql import COMMAND_TTL_S, RETRYABLE, CommandRecorder

RECORDER_TOPIC = "darkroom.eventstore:GroupCommitRecorder"

# Bounds on one transaction: keeps lock hold time, memory and the cost of the
# rare fallback (which redoes the batch request by request) predictable.
MAX_BATCH_REQUESTS = 500
MAX_BATCH_EVENTS = 5_000


class RecorderClosedError(PersistenceError):
    """Raised by `insert_events` after the recorder (or its datastore) was closed."""


class GroupCommitRecorder(CommandRecorder):
    """Application recorder that commits concurrent `insert_events` calls together.

    Semantics per call are those of the library's recorder: the caller gets the
    notification ids of its own events, in order, or an `IntegrityError` when
    its own events (or command key) conflict; batchmates are unaffected.

    Extra keyword arguments of `insert_events` (and so of `Application.save`):
    `command_key` (str) and `command_result` (JSON-able dict) record the
    command's outcome in `{events_table}_commands`, atomically with its events;
    `command_route` and `command_hash` (str, optional) record what the key is
    bound to (the route template and the request's hash). A stored key older
    than `command_ttl_s` has expired: lookups ignore it and a new command with
    that key replaces it. `command_reads` ((originator_id, version) pairs) is what
    the caller's decision read without writing: the call fails with
    `IntegrityError` if the log holds a newer event of one of them (`checks_reads`).
    """

    checks_reads = True

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self._lock_timeout = f"{self.datastore.lock_timeout}s"
        # Subclasses may write more rows per call through the library's hook
        # (e.g. tracking records); only then does a batch need BEGIN/COMMIT.
        self._has_insert_hook = (
            type(self)._insert_events is not PostgresApplicationRecorder._insert_events
        )
        self._mutex = threading.Lock()
        self._idle = threading.Condition(self._mutex)
        self._pending: deque[Request] = deque()
        self._leading = False
        self._closed = False
        _add_close_hook(datastore, self)

    # --------------------------------------------------------------- writing

    @retry(RETRYABLE, max_attempts=10, wait=0.2)
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
        request = Request(stored_events, kwargs)
        self._submit(request)
        return request.result()

    def _submit(self, request: Request) -> None:
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

    def _abandon(self, request: Request) -> None:
        # A waiting caller was interrupted (KeyboardInterrupt): withdraw its
        # request if it was not taken yet, and never sit on leadership we were
        # handed, or every later caller would wait forever.
        with self._mutex:
            if request in self._pending:
                self._pending.remove(request)
            promoted = request.promoted and not request.done
        if promoted:
            self._hand_off()

    def _lead(self, own: Request) -> None:
        """Commit batches until our own request is done, then pass leadership on."""
        try:
            while not own.done:
                batch = self._next_batch()
                assert batch, "a leader's own request is pending until done"
                self._commit_batch(batch)
        finally:
            self._hand_off()

    def _next_batch(self) -> list[Request]:
        """The pending requests, in arrival order, up to the bounds, and up to (not
        including) one that read what an earlier one of the batch writes: its read is
        checked against the log once that write has committed or lost."""
        batch: list[Request] = []
        n_events = 0
        written: set[Any] = set()
        with self._mutex:
            while self._pending and len(batch) < MAX_BATCH_REQUESTS:
                head = self._pending[0]
                size = len(head.events)
                if batch and n_events + size > MAX_BATCH_EVENTS:
                    break
                if batch and head.reads and not written.isdisjoint(head.reads):
                    break
                batch.append(self._pending.popleft())
                written |= head.writes
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

    def _commit_batch(self, batch: list[Request]) -> None:
        """Write a batch; every request in it ends done, whatever happens."""
        try:
            try:
                outcomes = self._write_together(batch)
            except REQUEST_ERRORS as error:
                if len(batch) == 1:
                    batch[0].fail(error, shared=False)
                    return
                # Someone's bad request (a bad value, or a conflict the append
                # function could not sort out, such as a concurrent command-only
                # write of the same key) aborted the shared transaction: redo it
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

    def _write_together(self, batch: list[Request]) -> list[list[int] | BaseException]:
        """All requests in one transaction: one statement, one round trip.

        Requests that conflict (with stored rows, or with an earlier batchmate)
        are left out by the append function and get an `IntegrityError`; the
        others commit.
        """
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if self._has_insert_hook:
                with conn.transaction():
                    ids, rejected = self._append(curs, batch)
                    # After the append: a request that lost writes no hook rows.
                    for index, request in enumerate(batch):
                        if index not in rejected:
                            self._insert_events(curs, request.events, **request.kwargs)
            else:
                ids, rejected = self._append(curs, batch)  # autocommit: its own transaction
        outcomes: list[list[int] | BaseException] = []
        for index, part in enumerate(split(ids, [len(request.events) for request in batch])):
            if index in rejected:
                outcomes.append(conflict())
            else:
                outcomes.append(cast("list[int]", part))
        return outcomes

    def _write_isolated(self, batch: list[Request]) -> list[list[int] | BaseException]:
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
                        ids, rejected = self._append(curs, [request])
                        if rejected:
                            raise conflict()
                        self._insert_events(curs, request.events, **request.kwargs)
                        outcomes.append(cast("list[int]", ids))
                except PSYCOPG_REQUEST_ERRORS as error:
                    outcomes.append(translated(error))
                except REQUEST_ERRORS as error:
                    outcomes.append(error)
        return outcomes

    def _append(
        self, curs: Cursor[DictRow], batch: Sequence[Request]
    ) -> tuple[list[int | None], set[int]]:
        """Call the append function for `batch`.

        Returns the ids of all its events in order (None for the events of a
        request that lost a conflict) and the indexes of the requests that lost.
        """
        originator_ids: list[Any] = []
        versions: list[int] = []
        topics: list[str] = []
        states: list[bytes] = []
        event_req: list[int] = []
        keys: list[str] = []
        results: list[Jsonb] = []
        key_req: list[int] = []
        last_event: list[int] = []
        routes: list[str | None] = []
        hashes: list[str | None] = []
        read_ids: list[Any] = []
        read_versions: list[int] = []
        read_req: list[int] = []
        for number, request in enumerate(batch, 1):
            if request.read_ids:
                read_ids += request.read_ids
                read_versions += request.read_versions
                read_req += [number] * len(request.read_ids)
            originator_ids += request.originator_ids
            versions += request.versions
            topics += request.topics
            states += request.states
            event_req += [number] * len(request.events)
            if request.command_key is not None:
                keys.append(request.command_key)
                results.append(Jsonb(request.command_json, dumps=identity))
                key_req.append(number)
                last_event.append(len(originator_ids) if request.events else 0)
                routes.append(request.command_route)
                hashes.append(request.command_hash)
        shared_req, shared_key = shared_keys(batch)
        curs.execute(
            self.sql_call_append,
            (
                originator_ids,
                versions,
                topics,
                states,
                event_req,
                keys,
                results,
                key_req,
                last_event,
                len(batch),
                shared_req,
                shared_key,
                self._lock_timeout,
                routes,
                hashes,
                self.command_ttl_s,
                read_ids,
                read_versions,
                read_req,
            ),
            prepare=True,
        )
        row = curs.fetchone()
        assert row is not None
        ids: list[int | None] = row["o_ids"]
        if len(ids) != len(originator_ids):  # pragma: no cover - would be a server bug
            msg = f"Expected {len(originator_ids)} notification ids, got {len(ids)}"
            raise PersistenceError(msg)
        return ids, {number - 1 for number in row["o_rejected"]}

    # -------------------------------------------------------------- closing

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new writes and wait (up to `timeout` s) for queued ones to commit."""
        with self._mutex:
            self._closed = True
            self._idle.wait_for(lambda: not self._leading, timeout)


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


__all__ = ["COMMAND_TTL_S", "RECORDER_TOPIC", "GroupCommitRecorder", "RecorderClosedError"]

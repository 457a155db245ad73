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

See docs/EVENTSTORE.md for the design.
"""

from __future__ import annotations

import copy
import json
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

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

# How long an idempotency key is remembered (docs/EVENTSTORE.md, "Idempotency").
COMMAND_TTL_S = 24 * 3600.0

# Bounds on one transaction: keeps lock hold time, memory and the cost of the
# rare fallback (which redoes the batch request by request) predictable.
MAX_BATCH_REQUESTS = 500
MAX_BATCH_EVENTS = 5_000

_RETRYABLE = (InterfaceError, OperationalError)

# Tags a command key among the (originator_id, version) pairs of `_Request.keys`.
_COMMAND = object()

# Errors one request can cause by itself (a conflict, a bad value). In a batch
# they are isolated to that request; anything else (connection lost, lock
# timeout) fails the whole batch, and the callers' retry policy takes over.
_REQUEST_ERRORS = (
    IntegrityError,
    DataError,
    ProgrammingError,
    NotSupportedError,
    TypeError,
    ValueError,
)
_PSYCOPG_REQUEST_ERRORS = (
    psycopg.IntegrityError,
    psycopg.DataError,
    psycopg.ProgrammingError,
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
        "command_hash",
        "command_json",
        "command_key",
        "command_route",
        "done",
        "error",
        "error_is_shared",
        "events",
        "keys",
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
        # What the key is bound to (NULL: unknown, matches any request).
        self.command_route: str | None = kwargs.get("command_route")
        self.command_hash: str | None = kwargs.get("command_hash")
        # Serialised here too, so a result that is not JSON fails this caller
        # alone and never reaches the shared transaction.
        self.command_json: str | None = None
        if self.command_key is not None:
            result = kwargs.get("command_result") or {}
            if not isinstance(result, dict):
                msg = f"command_result must be a dict, not {type(result).__name__}"
                raise TypeError(msg)
            self.command_json = json.dumps(result)
        # Everything this call must be the first to write: its (originator_id,
        # version) pairs and its command key. The leader finds batchmates that
        # share one by set operations on these.
        self.keys: set[Any] = set(zip(self.originator_ids, self.versions, strict=True))
        if len(self.keys) != len(events):
            msg = "Two of the events have the same originator_id and originator_version"
            raise IntegrityError(msg)
        if self.command_key is not None:
            self.keys.add((_COMMAND, self.command_key))
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
    command's outcome in `{events_table}_commands`, atomically with its events;
    `command_route` and `command_hash` (str, optional) record what the key is
    bound to (the route template and the request's hash). A stored key older
    than `command_ttl_s` has expired: lookups ignore it and a new command with
    that key replaces it.
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
        self.command_ttl_s = COMMAND_TTL_S
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
                "created_at timestamptz DEFAULT now(), "
                "route text, "
                "request_hash text)"
            ).format(schema=schema, commands=commands)
        )
        # Tables made before keys were bound to their request gain the columns;
        # their old rows keep NULLs, which match any request.
        for column in ("route", "request_hash"):
            self.sql_create_statements.append(
                SQL(
                    "ALTER TABLE {schema}.{commands} ADD COLUMN IF NOT EXISTS {column} text"
                ).format(schema=schema, commands=commands, column=Identifier(column))
            )
        # The append function before it took routes, hashes and the key TTL: dropped,
        # so that only one signature exists.
        self.sql_create_statements.append(
            SQL(
                "DROP FUNCTION IF EXISTS {schema}.{append}({id_type}[], bigint[], text[], "
                "bytea[], int[], text[], jsonb[], int[], int[], int, int[], int[], text)"
            ).format(schema=schema, append=append, id_type=id_type)
        )
        # The whole batch in one server-side call: lock, insert events, insert
        # command rows, notify. Called alone on an autocommit connection it is
        # its own transaction, so a batch costs one round trip, conflicts or not.
        #
        # Fast path (no two batchmates share a key): insert everything inside a
        # BEGIN/EXCEPTION block (one subtransaction). A unique violation rolls
        # that back (not the lock, taken outside it) and falls through to the
        # checked path, which the call takes directly when batchmates do share
        # keys. Checked path: a request loses if one of its keys is already
        # stored (race-free: the EXCLUSIVE lock is held; rows committed before
        # we got it are visible to the next statement), then, in arrival order,
        # if a shared key was taken by an earlier request that did not lose.
        # That is exactly what writing the requests one by one would decide.
        # Only the winners' rows are inserted; losers are returned (1-based).
        # Ids are returned aligned with the input events, NULL for a loser's.
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{append}("
                "p_originator_ids {id_type}[], p_versions bigint[], "
                "p_topics text[], p_states bytea[], p_event_req int[], "
                "p_keys text[], p_results jsonb[], p_key_req int[], p_last_event int[], "
                "p_n_requests int, p_shared_req int[], p_shared_key int[], "
                "p_lock_timeout text, p_routes text[], p_hashes text[], p_key_ttl_s float8, "
                "OUT o_ids bigint[], OUT o_rejected int[]) "
                "LANGUAGE plpgsql AS $$ "
                "DECLARE v_head bigint; v_ids bigint[]; v_rej bool[]; v_taken bool[]; "
                "  v_req int; v_lose bool; v_i int; v_j int; v_k int; "
                "BEGIN "
                "  o_rejected := '{{}}'; "
                "  IF cardinality(p_originator_ids) > 0 THEN "
                # The library's EXCLUSIVE table lock, kept on purpose: commit
                # order then equals id order for every writer, in every process.
                "    PERFORM set_config('lock_timeout', p_lock_timeout, true); "
                "    LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE; "
                "  END IF; "
                # An expired key is free again: its old row goes before the insert.
                "  IF cardinality(p_keys) > 0 THEN "
                "    DELETE FROM {schema}.{commands} WHERE key = ANY(p_keys) "
                "      AND created_at < now() - make_interval(secs => p_key_ttl_s); "
                "  END IF; "
                "  IF cardinality(p_shared_req) = 0 THEN "
                "    BEGIN "
                "      WITH inserted AS ("
                "        INSERT INTO {schema}.{events} "
                "        (originator_id, originator_version, topic, state) "
                "        SELECT * FROM unnest(p_originator_ids, p_versions, p_topics, p_states) "
                "        RETURNING notification_id) "
                "      SELECT array_agg(notification_id) INTO o_ids FROM inserted; "
                # A command that stores no events gets the log's head as its
                # position: a replay can still wait on it (read your writes).
                # Every id below a committed id is committed (table lock).
                "      IF cardinality(p_keys) > 0 THEN "
                "        IF 0 = ANY(p_last_event) THEN "
                "          SELECT max(notification_id) INTO v_head FROM {schema}.{events}; "
                "        END IF; "
                # p_last_event holds 1-based indexes into the events; 0: none.
                "        INSERT INTO {schema}.{commands} "
                "        (key, result, position, route, request_hash) "
                "        SELECT c.k, c.res, "
                "          CASE WHEN c.l > 0 THEN o_ids[c.l] ELSE coalesce(v_head, 0) END, "
                "          c.rt, c.h "
                "        FROM unnest(p_keys, p_results, p_last_event, p_routes, p_hashes) "
                "          AS c(k, res, l, rt, h); "
                "      END IF; "
                "      IF o_ids IS NOT NULL THEN PERFORM pg_notify({channel}, ''); END IF; "
                "      o_ids := coalesce(o_ids, '{{}}'); "
                "      RETURN; "
                "    EXCEPTION WHEN unique_violation THEN "
                "      o_ids := NULL; "
                "    END; "
                "  END IF; "
                "  v_rej := array_fill(false, ARRAY[p_n_requests]); "
                "  FOR v_req IN "
                "    SELECT e.r FROM unnest(p_originator_ids, p_versions, p_event_req) "
                "      AS e(o, v, r) WHERE EXISTS (SELECT FROM {schema}.{events} s "
                "      WHERE s.originator_id = e.o AND s.originator_version = e.v) "
                "    UNION SELECT c.r FROM unnest(p_keys, p_key_req) AS c(k, r) "
                "      WHERE EXISTS (SELECT FROM {schema}.{commands} t WHERE t.key = c.k) "
                "  LOOP v_rej[v_req] := true; END LOOP; "
                # (request, shared key id) pairs, grouped by request in arrival
                # order: the first request not already lost takes its keys.
                "  IF cardinality(p_shared_req) > 0 THEN "
                "    v_taken := array_fill(false, ARRAY[cardinality(p_shared_key)]); "
                "    v_i := 1; "
                "    WHILE v_i <= cardinality(p_shared_req) LOOP "
                "      v_req := p_shared_req[v_i]; v_lose := v_rej[v_req]; v_j := v_i; "
                "      WHILE v_j <= cardinality(p_shared_req) "
                "          AND p_shared_req[v_j] = v_req LOOP "
                "        v_lose := v_lose OR v_taken[p_shared_key[v_j]]; v_j := v_j + 1; "
                "      END LOOP; "
                "      IF v_lose THEN v_rej[v_req] := true; "
                "      ELSE "
                "        FOR v_k IN v_i .. v_j - 1 LOOP "
                "          v_taken[p_shared_key[v_k]] := true; "
                "        END LOOP; "
                "      END IF; "
                "      v_i := v_j; "
                "    END LOOP; "
                "  END IF; "
                "  WITH inserted AS ("
                "    INSERT INTO {schema}.{events} "
                "    (originator_id, originator_version, topic, state) "
                "    SELECT e.o, e.v, e.t, e.s "
                "    FROM unnest(p_originator_ids, p_versions, p_topics, p_states, p_event_req) "
                "      AS e(o, v, t, s, r) WHERE NOT v_rej[e.r] "
                "    RETURNING notification_id) "
                "  SELECT array_agg(notification_id) INTO v_ids FROM inserted; "
                # Spread the winners' ids back over the input positions.
                "  SELECT array_agg(CASE WHEN x.won THEN v_ids[x.s::int] END ORDER BY x.n) "
                "  INTO o_ids FROM (SELECT e.n, NOT v_rej[e.r] AS won, "
                "    count(*) FILTER (WHERE NOT v_rej[e.r]) OVER (ORDER BY e.n) AS s "
                "    FROM unnest(p_event_req) WITH ORDINALITY AS e(r, n)) AS x; "
                "  IF 0 = ANY(p_last_event) THEN "
                "    SELECT max(notification_id) INTO v_head FROM {schema}.{events}; "
                "  END IF; "
                "  INSERT INTO {schema}.{commands} (key, result, position, route, request_hash) "
                "  SELECT c.k, c.res, "
                "    CASE WHEN c.l > 0 THEN o_ids[c.l] ELSE coalesce(v_head, 0) END, c.rt, c.h "
                "  FROM unnest(p_keys, p_results, p_last_event, p_key_req, p_routes, p_hashes) "
                "    AS c(k, res, l, r, rt, h) "
                "  WHERE NOT v_rej[c.r]; "
                "  IF v_ids IS NOT NULL THEN PERFORM pg_notify({channel}, ''); END IF; "
                "  SELECT coalesce(array_agg(u.n::int ORDER BY u.n), '{{}}') INTO o_rejected "
                "  FROM unnest(v_rej) WITH ORDINALITY AS u(lost, n) WHERE u.lost; "
                "  o_ids := coalesce(o_ids, '{{}}'); "
                "END $$"
            ).format(
                schema=schema,
                events=events,
                commands=commands,
                append=append,
                id_type=id_type,
                channel=Literal(self.channel_name),
            )
        )
        # Binary column arrays: psycopg dumps lists of uuid/int/str/bytes in C.
        self.sql_call_append = SQL(
            "SELECT o_ids, o_rejected FROM {schema}.{append}(%b::{id_type}[], "
            "%b::bigint[], %b::text[], %b::bytea[], %b::int[], %b::text[], %b::jsonb[], "
            "%b::int[], %b::int[], %b::int4, %b::int[], %b::int[], %s, %b::text[], "
            "%b::text[], %s::float8)"
        ).format(schema=schema, append=append, id_type=id_type)
        self.sql_head_position = SQL(
            "SELECT COALESCE(MAX(notification_id), 0) AS head FROM {schema}.{events}"
        ).format(schema=schema, events=events)
        self.sql_select_history = SQL(
            "SELECT notification_id, originator_version, topic, state "
            "FROM {schema}.{events} WHERE originator_id = %s AND originator_version > %s "
            "ORDER BY originator_version LIMIT %s"
        ).format(schema=schema, events=events)
        self.sql_command_result = SQL(
            "SELECT result, position FROM {schema}.{commands} WHERE key = %s"
        ).format(schema=schema, commands=commands)
        self.sql_command_record = SQL(
            "SELECT result, position, route, request_hash, created_at "
            "FROM {schema}.{commands} WHERE key = %s "
            "AND created_at >= now() - make_interval(secs => %s)"
        ).format(schema=schema, commands=commands)
        self.sql_prune_commands = SQL(
            "DELETE FROM {schema}.{commands} WHERE created_at < now() - make_interval(secs => %s)"
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

    def _write_together(self, batch: list[_Request]) -> list[list[int] | BaseException]:
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
        for index, part in enumerate(_split(ids, [len(request.events) for request in batch])):
            if index in rejected:
                outcomes.append(_conflict())
            else:
                outcomes.append(cast("list[int]", part))
        return outcomes

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
                        ids, rejected = self._append(curs, [request])
                        if rejected:
                            raise _conflict()
                        self._insert_events(curs, request.events, **request.kwargs)
                        outcomes.append(cast("list[int]", ids))
                except _PSYCOPG_REQUEST_ERRORS as error:
                    outcomes.append(_translated(error))
                except _REQUEST_ERRORS as error:
                    outcomes.append(error)
        return outcomes

    def _append(
        self, curs: Cursor[DictRow], batch: Sequence[_Request]
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
        for number, request in enumerate(batch, 1):
            originator_ids += request.originator_ids
            versions += request.versions
            topics += request.topics
            states += request.states
            event_req += [number] * len(request.events)
            if request.command_key is not None:
                keys.append(request.command_key)
                results.append(Jsonb(request.command_json, dumps=_identity))
                key_req.append(number)
                last_event.append(len(originator_ids) if request.events else 0)
                routes.append(request.command_route)
                hashes.append(request.command_hash)
        shared_req, shared_key = _shared_keys(batch)
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
    def select_history(
        self, originator_id: Any, after_version: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Stored events of one aggregate after `after_version`, ordered by version, at most
        `limit` (None: all; for audits)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.sql_select_history, (originator_id, after_version, limit), prepare=True
            )
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

    @retry(_RETRYABLE, max_attempts=10, wait=0.2)
    def command_record(self, key: str) -> dict[str, Any] | None:
        """Command `key`'s row if it has not expired: `result` (with `"position"`),
        `route`, `request_hash` (None for rows stored before keys were bound) and
        `created_at`. None if the key is unknown or older than `command_ttl_s`."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_command_record, (key, self.command_ttl_s), prepare=True)
            row = curs.fetchone()
        if row is None:
            return None
        return {
            "result": {**row["result"], "position": row["position"]},
            "route": row["route"],
            "request_hash": row["request_hash"],
            "created_at": row["created_at"],
        }

    @retry(_RETRYABLE, max_attempts=10, wait=0.2)
    def prune_commands(self, older_than_s: float | None = None) -> int:
        """Deletes command rows older than `older_than_s` (default: the TTL): expired
        keys. Returns how many rows went."""
        age = self.command_ttl_s if older_than_s is None else older_than_s
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_prune_commands, (age,))
            return int(curs.rowcount or 0)

    # -------------------------------------------------------------- closing

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new writes and wait (up to `timeout` s) for queued ones to commit."""
        with self._mutex:
            self._closed = True
            self._idle.wait_for(lambda: not self._leading, timeout)


def _shared_keys(batch: Sequence[_Request]) -> tuple[list[int], list[int]]:
    """Keys that more than one request of `batch` wants to write, as two columns.

    Returns (request number, key number) pairs grouped by request in arrival
    order (numbers are 1-based), or two empty lists when requests are disjoint,
    the usual case, found with one set operation per request.
    """
    seen: set[Any] = set()
    shared: set[Any] = set()
    for request in batch:
        if not seen.isdisjoint(request.keys):
            shared |= seen & request.keys
        seen |= request.keys
    if not shared:
        return [], []
    numbers: dict[Any, int] = {}
    requests: list[int] = []
    keys: list[int] = []
    for number, request in enumerate(batch, 1):
        for key in request.keys & shared:
            requests.append(number)
            keys.append(numbers.setdefault(key, len(numbers) + 1))
    return requests, keys


def _conflict() -> IntegrityError:
    return IntegrityError(
        "Conflict: an event's (originator_id, originator_version) or the command key is "
        "already recorded, or was written first by an earlier call in the same batch"
    )


def _split(ids: list[int | None], sizes: list[int]) -> list[list[int | None]]:
    parts: list[list[int | None]] = []
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


__all__ = ["COMMAND_TTL_S", "RECORDER_TOPIC", "GroupCommitRecorder", "RecorderClosedError"]

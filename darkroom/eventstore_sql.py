"""The recorder under the group commit (darkroom/eventstore.py): the library's PostgreSQL
recorder plus the commands table (idempotency keys bound to their request), the append
function that writes a whole batch in one server-side call, and the reads the studio
makes of both (head position, one aggregate's history, command rows). See
docs/EVENTSTORE.md for the design.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier, Literal

# How long an idempotency key is remembered (docs/EVENTSTORE.md, "Idempotency").
COMMAND_TTL_S = 24 * 3600.0

RETRYABLE = (InterfaceError, OperationalError)


class CommandRecorder(PostgresApplicationRecorder):
    """The library's recorder with the commands table, the append function's SQL and the
    reads; `GroupCommitRecorder` adds the writing."""

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
        self.command_ttl_s = COMMAND_TTL_S
        self._build_statements()

    # ------------------------------------------------------------------ SQL

    def _build_statements(self) -> None:
        schema = Identifier(self.datastore.schema)
        events = Identifier(self.events_table_name)
        commands = Identifier(self.commands_table_name)
        append = Identifier(self.append_function_name)
        id_type = Identifier(self.datastore.originator_id_type)
        # Replicas started together each run this DDL; CREATE OR REPLACE FUNCTION in two
        # transactions at once fails ("tuple concurrently updated"). The library runs the
        # statements in one transaction, so a transaction lock first makes them take turns.
        self.sql_create_statements.insert(
            0,
            SQL("SELECT pg_advisory_xact_lock(hashtext({name}))").format(
                name=Literal("darkroom.eventstore.ddl")
            ),
        )
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
        # The one before it checked reads (16 arguments) is left in place for one release:
        # during a rolling upgrade the processes not yet upgraded still call it, and their
        # writes take the same table lock the new function's read checks run under, so
        # the two mix safely. The release after this one drops it.
        # Reads (`command_reads`): a request loses if the log holds an event of an
        # aggregate its decision read, newer than the version it read (0: read as
        # absent). Checked under the same lock as the insert, so exact: nothing can
        # commit in between. A request that reads what an earlier batchmate writes is
        # held for the next batch (`GroupCommitRecorder._next_batch`).
        #
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
                "p_read_ids {id_type}[], p_read_versions bigint[], p_read_req int[], "
                "OUT o_ids bigint[], OUT o_rejected int[]) "
                "LANGUAGE plpgsql AS $$ "
                "DECLARE v_head bigint; v_ids bigint[]; v_rej bool[]; v_taken bool[]; "
                "  v_req int; v_lose bool; v_i int; v_j int; v_k int; v_moved bool := false; "
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
                "  v_rej := array_fill(false, ARRAY[p_n_requests]); "
                "  IF cardinality(p_read_ids) > 0 THEN "
                "    FOR v_req IN SELECT DISTINCT x.r "
                "      FROM unnest(p_read_ids, p_read_versions, p_read_req) AS x(o, v, r) "
                "      WHERE EXISTS (SELECT FROM {schema}.{events} s "
                "        WHERE s.originator_id = x.o AND s.originator_version > x.v) "
                "    LOOP v_rej[v_req] := true; v_moved := true; END LOOP; "
                "  END IF; "
                "  IF cardinality(p_shared_req) = 0 AND NOT v_moved THEN "
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
            "%b::text[], %s::float8, %b::{id_type}[], %b::bigint[], %b::int[])"
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

    # --------------------------------------------------------------- reading

    @retry(RETRYABLE, max_attempts=10, wait=0.2)
    def head_position(self) -> int:
        """The highest notification id stored (0 when the log is empty)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_head_position, prepare=True)
            row = curs.fetchone()
            assert row is not None
            return int(row["head"])

    @retry(RETRYABLE, max_attempts=10, wait=0.2)
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

    @retry(RETRYABLE, max_attempts=10, wait=0.2)
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

    @retry(RETRYABLE, max_attempts=10, wait=0.2)
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

    @retry(RETRYABLE, max_attempts=10, wait=0.2)
    def prune_commands(self, older_than_s: float | None = None) -> int:
        """Deletes command rows older than `older_than_s` (default: the TTL): expired
        keys. Returns how many rows went."""
        age = self.command_ttl_s if older_than_s is None else older_than_s
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_prune_commands, (age,))
            return int(curs.rowcount or 0)

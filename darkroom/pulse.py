"""Heartbeats in PostgreSQL: one row per worker, moved forward, never an event.

Plugged in by topic (`PULSE_TOPIC=darkroom.pulse:PostgresPulse`, set by
`darkroom.wiring.studio_env`), built with the studio's recorder so it shares its
connection pool and schema. See `domain/pulse.py` for why heartbeats are not events.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from psycopg.sql import SQL, Identifier

PULSE_TOPIC = "darkroom.pulse:PostgresPulse"

# A worker may heartbeat several times a second while it holds a task (to hear of
# cancellations); the row needs no finer grain than this, and the sweeper's timeout
# is minutes.
WRITE_EVERY = timedelta(seconds=5)


class PostgresPulse:
    def __init__(self, recorder: Any) -> None:
        self.datastore = recorder.datastore
        schema = Identifier(self.datastore.schema)
        table = Identifier(f"{recorder.events_table_name}_pulse")
        self._create = SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (worker_id text PRIMARY KEY, "
            "last_seen timestamptz NOT NULL)").format(schema, table)
        self._touch = SQL(
            "INSERT INTO {s}.{t} AS p (worker_id, last_seen) VALUES (%s, %s) "
            "ON CONFLICT (worker_id) DO UPDATE SET last_seen = excluded.last_seen "
            "WHERE p.last_seen < excluded.last_seen").format(s=schema, t=table)
        self._read = SQL("SELECT last_seen FROM {}.{} WHERE worker_id = %s").format(
            schema, table)
        self._written: dict[str, datetime] = {}
        self._lock = threading.Lock()
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._create)

    def touch(self, worker_id: str, at: datetime) -> None:
        with self._lock:
            written = self._written.get(worker_id)
            if written is not None and at - written < WRITE_EVERY:
                return
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._touch, (worker_id, at), prepare=True)
        with self._lock:
            self._written.pop(worker_id, None)
            self._written[worker_id] = at
            if len(self._written) > 10_000:  # workers come and go: forget the oldest
                del self._written[next(iter(self._written))]

    def last_seen(self, worker_id: str) -> datetime | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._read, (worker_id,), prepare=True)
            row = curs.fetchone()
        return None if row is None else row["last_seen"]  # type: ignore[no-any-return]

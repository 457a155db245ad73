"""Heartbeats in PostgreSQL: one row per worker, moved forward, never an event.

Plugged in by topic (`PULSE_TOPIC=darkroom.pulse:PostgresPulse`, set by
`darkroom.wiring.studio_env`), built with the studio's recorder so it shares its
connection pool and schema. See `domain/pulse.py` for why heartbeats are not events.

The row also carries the worker's last report (status, loaded model, VRAM) in the same
upsert, so a heartbeat costs what it did: one statement, at most every `WRITE_EVERY`
per worker, sooner only when the status or the model changes.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from psycopg.sql import SQL, Identifier

from domain.pulse import NO_REPORT, Beat, Report

PULSE_TOPIC = "darkroom.pulse:PostgresPulse"

# A worker may heartbeat several times a second while it holds a task (to hear of
# cancellations); the row needs no finer grain than this, and the sweeper's timeout
# is minutes.
WRITE_EVERY = timedelta(seconds=5)
REPORTED = ("status", "current_model", "vram_used_mb", "vram_total_mb")


class PostgresPulse:
    def __init__(self, recorder: Any) -> None:
        self.datastore = recorder.datastore
        schema = Identifier(self.datastore.schema)
        table = Identifier(f"{recorder.events_table_name}_pulse")
        self._create = SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (worker_id text PRIMARY KEY, "
            "last_seen timestamptz NOT NULL, status text, current_model text, "
            "vram_used_mb integer, vram_total_mb integer)"
        ).format(schema, table)
        # A table from before reports were kept gains the columns (empty). Only then:
        # ALTER TABLE locks the table against every process's heartbeats.
        self._has_reports = SQL(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s AND column_name = 'vram_total_mb'"
        )
        self._add_reports = SQL(
            "ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS status text, "
            "ADD COLUMN IF NOT EXISTS current_model text, "
            "ADD COLUMN IF NOT EXISTS vram_used_mb integer, "
            "ADD COLUMN IF NOT EXISTS vram_total_mb integer"
        ).format(schema, table)
        kept = SQL(", ").join(
            SQL("{c} = COALESCE(excluded.{c}, p.{c})").format(c=Identifier(c)) for c in REPORTED
        )
        self._touch = SQL(
            "INSERT INTO {s}.{t} AS p (worker_id, last_seen, status, current_model, "
            "vram_used_mb, vram_total_mb) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (worker_id) DO UPDATE SET last_seen = excluded.last_seen, {kept} "
            "WHERE p.last_seen < excluded.last_seen"
        ).format(s=schema, t=table, kept=kept)
        self._read = SQL("SELECT last_seen FROM {}.{} WHERE worker_id = %s").format(schema, table)
        self._beats = SQL(
            "SELECT worker_id, last_seen, status, current_model, vram_used_mb, "
            "vram_total_mb FROM {}.{} WHERE last_seen >= %s "
            "ORDER BY worker_id"
        ).format(schema, table)
        # worker -> (last written at, the report written, the latest report heard)
        self._written: dict[str, tuple[datetime, Report, Report]] = {}
        self._lock = threading.Lock()
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._create)
            curs.execute(
                self._has_reports, (self.datastore.schema, f"{recorder.events_table_name}_pulse")
            )
            if curs.fetchone() is None:
                curs.execute(self._add_reports)

    def touch(self, worker_id: str, at: datetime, report: Report = NO_REPORT) -> None:
        with self._lock:
            known = self._written.get(worker_id)
            if known is not None:
                written_at, written, latest = known
                report = report.over(latest)
                if at - written_at < WRITE_EVERY and not self._news(report, written):
                    # Not written: the next write carries it (the VRAM of a skipped beat).
                    self._written[worker_id] = (written_at, written, report)
                    return
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self._touch,
                (
                    worker_id,
                    at,
                    report.status,
                    report.current_model,
                    report.vram_used_mb,
                    report.vram_total_mb,
                ),
                prepare=True,
            )
        with self._lock:
            self._written.pop(worker_id, None)
            self._written[worker_id] = (at, report, report)
            if len(self._written) > 10_000:  # workers come and go: forget the oldest
                del self._written[next(iter(self._written))]

    @staticmethod
    def _news(report: Report, written: Report) -> bool:
        """A new status or model is written at once; VRAM waits for the next write."""
        return (report.status, report.current_model) != (written.status, written.current_model)

    def last_seen(self, worker_id: str) -> datetime | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._read, (worker_id,), prepare=True)
            row = curs.fetchone()
        return None if row is None else row["last_seen"]

    def beats(self, since: datetime) -> list[Beat]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._beats, (since,))
            rows = curs.fetchall()
        return [
            Beat(r["worker_id"], r["last_seen"], Report(*(r[c] for c in REPORTED))) for r in rows
        ]

"""Append throughput: the library's PostgresApplicationRecorder vs GroupCommitRecorder.

Same process, same PostgreSQL, a fresh schema per run. Each writer thread
appends like real commands do: a new aggregate per call, 1 to 3 events per
`insert_events`. A reader tails the log with `select_notifications` during every
run and must see every id exactly once, in order.

    python bench/append.py [--events-per-writer 1000] [--writers 1,8,16]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from eventsourcing.postgres import PostgresFactory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkroom.database import Database, create_schema, drop_schema, resolve
from darkroom.eventstore import RECORDER_TOPIC

RECORDERS: dict[str, str | None] = {"default": None, "group": RECORDER_TOPIC}


@dataclass
class RunResult:
    events: int
    seconds: float
    transactions: int
    skipped: int
    out_of_order: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


class TailingReader(threading.Thread):
    """Polls `select_notifications` after the last seen id, as a projection would."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        super().__init__(daemon=True)
        self.recorder = recorder
        self.seen: list[int] = []
        self.stop_at: int | None = None  # set once writers are done: the final head

    def run(self) -> None:
        last = 0
        while self.stop_at is None or last < self.stop_at:
            page = self.recorder.select_notifications(last, 1000, inclusive_of_start=False)
            if page:
                self.seen.extend(n.id for n in page)
                last = page[-1].id
            else:
                time.sleep(0.002)  # an idle poll should not steal the writers' GIL


def state_for(aggregate_id: uuid.UUID, version: int) -> bytes:
    """A realistic event body (about 250 bytes of JSON)."""
    return json.dumps({
        "originator_id": str(aggregate_id), "originator_version": version,
        "timestamp": "2025-01-01T00:00:00+00:00", "project_id": str(aggregate_id),
        "name": "generation", "params": {"prompt": "a lighthouse at dusk", "steps": 2},
    }).encode()


def writer(recorder: ApplicationRecorder, n_events: int, seed: int) -> Callable[[], None]:
    rng = random.Random(seed)

    def run() -> None:
        left = n_events
        while left > 0:
            size = min(left, rng.randint(1, 3))
            aggregate_id = uuid.uuid4()
            recorder.insert_events([
                StoredEvent(aggregate_id, v, "domain.generation:Generation.Event",
                            state_for(aggregate_id, v))
                for v in range(1, size + 1)
            ])
            left -= size

    return run


def run_once(db: Database, topic: str | None, writers: int, per_writer: int) -> RunResult:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    create_schema(db, schema)
    env = db.eventsourcing_env(schema, pool_size=max(4, writers + 2))
    if topic:
        env["APPLICATION_RECORDER_TOPIC"] = topic
    factory = PostgresFactory(env)
    try:
        recorder = factory.application_recorder()
        reader = TailingReader(recorder)
        reader.start()
        threads = [threading.Thread(target=writer(recorder, per_writer, seed))
                   for seed in range(writers)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        reader.stop_at = recorder.max_notification_id() or 0
        reader.join()
        return audit(db, schema, recorder, reader, writers * per_writer, seconds)
    finally:
        factory.close()
        drop_schema(db, schema)


def audit(db: Database, schema: str, recorder: ApplicationRecorder, reader: TailingReader,
          events: int, seconds: float) -> RunResult:
    table = psycopg.sql.Identifier(schema, "stored_events")
    with psycopg.connect(db.conninfo) as conn:
        stored = [row[0] for row in conn.execute(psycopg.sql.SQL(
            "SELECT notification_id FROM {} ORDER BY notification_id").format(table))]
        # Rows written by one transaction share its xmin: this counts commits.
        row = conn.execute(psycopg.sql.SQL(
            "SELECT count(DISTINCT xmin::text) FROM {}").format(table)).fetchone()
    assert row is not None and len(stored) == events, (len(stored), events)
    seen = reader.seen
    out_of_order = sum(1 for a, b in itertools.pairwise(seen) if b <= a)
    return RunResult(events, seconds, row[0], len(set(stored) - set(seen)), out_of_order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-writer", type=int, default=1000)
    parser.add_argument("--writers", default="1,8,16")
    args = parser.parse_args()
    counts = [int(w) for w in args.writers.split(",")]

    db = resolve(os.environ.get("DATABASE_URL"), Path(".darkroom/bench-pg"))
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {os.cpu_count()} cores · "
          f"Python {platform.python_version()} · {args.events_per_writer} events per writer")
    print(f"{'writers':>7} {'default ev/s':>13} {'group ev/s':>11} {'ratio':>6} "
          f"{'ev/commit':>9} {'skipped d/g':>11} {'unordered d/g':>13}")
    for n in counts:
        results = {name: run_once(db, topic, n, args.events_per_writer)
                   for name, topic in RECORDERS.items()}
        d, g = results["default"], results["group"]
        print(f"{n:>7} {d.rate:>13,.0f} {g.rate:>11,.0f} {g.rate / d.rate:>5.1f}x "
              f"{g.events / g.transactions:>9.1f} {d.skipped:>5}/{g.skipped:<5} "
              f"{d.out_of_order:>6}/{g.out_of_order:<6}", flush=True)


if __name__ == "__main__":
    main()

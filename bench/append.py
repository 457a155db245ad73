"""Append throughput: the library's PostgresApplicationRecorder vs GroupCommitRecorder.

Same process, same PostgreSQL, a fresh schema per run. Each writer thread
appends like real commands do: a new aggregate per call, 1 to 3 events per
`insert_events`. A reader tails the log with `select_notifications` during every
run and must see every id exactly once, in order.

    python bench/append.py [--events-per-writer 1000] [--writers 1,8,16] [--repeat 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
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
    return json.dumps(
        {
            "originator_id": str(aggregate_id),
            "originator_version": version,
            "timestamp": "2025-01-01T00:00:00+00:00",
            "project_id": str(aggregate_id),
            "name": "generation",
            "params": {"prompt": "a lighthouse at dusk", "steps": 2},
        }
    ).encode()


def writer(recorder: ApplicationRecorder, n_events: int, seed: int) -> Callable[[], None]:
    rng = random.Random(seed)

    def run() -> None:
        left = n_events
        while left > 0:
            size = min(left, rng.randint(1, 3))
            aggregate_id = uuid.uuid4()
            recorder.insert_events(
                [
                    StoredEvent(
                        aggregate_id,
                        v,
                        "domain.generation:Generation.Event",
                        state_for(aggregate_id, v),
                    )
                    for v in range(1, size + 1)
                ]
            )
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
        threads = [
            threading.Thread(target=writer(recorder, per_writer, seed)) for seed in range(writers)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        reader.stop_at = recorder.max_notification_id() or 0
        reader.join()
        return audit(db, schema, reader, writers * per_writer, seconds)
    finally:
        factory.close()
        drop_schema(db, schema)


def audit(
    db: Database, schema: str, reader: TailingReader, events: int, seconds: float
) -> RunResult:
    table = psycopg.sql.Identifier(schema, "stored_events")
    with psycopg.connect(db.conninfo) as conn:
        stored = [
            row[0]
            for row in conn.execute(
                psycopg.sql.SQL("SELECT notification_id FROM {} ORDER BY notification_id").format(
                    table
                )
            )
        ]
        # Rows written by one transaction share its xmin: this counts commits.
        row = conn.execute(
            psycopg.sql.SQL("SELECT count(DISTINCT xmin::text) FROM {}").format(table)
        ).fetchone()
    assert row is not None and len(stored) == events, (len(stored), events)
    seen = reader.seen
    out_of_order = sum(1 for a, b in itertools.pairwise(seen) if b <= a)
    return RunResult(events, seconds, row[0], len(set(stored) - set(seen)), out_of_order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-writer", type=int, default=1000)
    parser.add_argument("--writers", default="1,8,16")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per cell; the median rate is printed (shared cores are noisy)",
    )
    args = parser.parse_args()
    counts = [int(w) for w in args.writers.split(",")]

    db = resolve(os.environ.get("DATABASE_URL"), Path(".darkroom/bench-pg"))
    # The load average says how much else was running: these are shared cores.
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {args.events_per_writer} events per writer · "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'writers':>7} {'default ev/s':>13} {'group ev/s':>11} {'ratio':>6} "
        f"{'ev/commit':>9} {'skipped d/g':>11} {'unordered d/g':>13}"
    )
    group_misses = 0
    for n in counts:
        runs: dict[str, list[RunResult]] = {name: [] for name in RECORDERS}
        for _ in range(args.repeat):  # alternate, so both see the same background load
            for name, topic in RECORDERS.items():
                runs[name].append(run_once(db, topic, n, args.events_per_writer))
        d, g = (statistics.median(r.rate for r in runs[name]) for name in RECORDERS)
        per_commit = statistics.median(r.events / r.transactions for r in runs["group"])
        skipped = [sum(r.skipped for r in runs[name]) for name in RECORDERS]
        unordered = [sum(r.out_of_order for r in runs[name]) for name in RECORDERS]
        print(
            f"{n:>7} {d:>13,.0f} {g:>11,.0f} {g / d:>5.1f}x {per_commit:>9.1f} "
            f"{skipped[0]:>5}/{skipped[1]:<5} {unordered[0]:>6}/{unordered[1]:<6}",
            flush=True,
        )
        group_misses += skipped[1] + unordered[1]
    verdict = "OK" if group_misses == 0 else "FAILED"
    print(
        f"tailing reader on group commit: {group_misses} events skipped or out of order - {verdict}"
    )
    if group_misses:
        sys.exit(1)


if __name__ == "__main__":
    main()

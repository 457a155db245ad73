"""Hot-aggregate writes: 100 threads saving one aggregate, ours vs the library's recorder.

The shape of eventsourcing's own `test_check_aggregate_fastforwarding_blocking`:
every thread loops `repository.get(id)` → one method that triggers an event →
`app.save()`, and on `IntegrityError` (someone else took that version) sleeps
1 ms and starts again. Almost every save in a round conflicts with the others,
so this measures how cheaply a recorder turns conflicts away. Each recorder
runs for a fixed time on a fresh schema, in the same process, first without
the aggregate cache, then with it (`AGGREGATE_CACHE_MAXSIZE=1000`).

    python bench/hot_aggregate.py [--seconds 10] [--threads 100] [--json out.json]

`run(database, seconds)` returns the figures for another bench to import.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkroom.database import Database, create_schema, drop_schema, resolve
from darkroom.eventstore import RECORDER_TOPIC

ROOT = Path(__file__).resolve().parent.parent
RECORDERS: dict[str, str | None] = {"group": RECORDER_TOPIC, "default": None}
CACHES: dict[str, dict[str, str]] = {"no_cache": {}, "cache": {"AGGREGATE_CACHE_MAXSIZE": "1000"}}
POOL_SIZE = 20  # same pool for both recorders: 20 connections + 20 overflow


class Counter(Aggregate):
    def __init__(self) -> None:
        self.value = 0

    @event("Incremented")
    def increment(self) -> None:
        self.value += 1


def run_one(
    db: Database,
    topic: str | None,
    extra_env: dict[str, str],
    seconds: float,
    threads: int = 100,
) -> dict[str, Any]:
    """One recorder, one fresh schema: `threads` threads on one aggregate for `seconds`."""
    schema = f"bench_hot_{uuid.uuid4().hex[:8]}"
    create_schema(db, schema)
    env = db.eventsourcing_env(schema, pool_size=POOL_SIZE)
    env["POSTGRES_MAX_OVERFLOW"] = str(POOL_SIZE)
    env["POSTGRES_CONNECT_TIMEOUT"] = "30"  # 100 threads queue for 40 connections
    env.update(extra_env)
    if topic:
        env["APPLICATION_RECORDER_TOPIC"] = topic
    app: Application[uuid.UUID] = Application(env=env)
    try:
        counter = Counter()
        app.save(counter)
        aggregate_id = counter.id
        saves = [0] * threads
        conflicts = [0] * threads
        errors: list[BaseException] = []
        start = threading.Barrier(threads + 1)
        stop = threading.Event()

        def work(index: int) -> None:
            start.wait()
            while not stop.is_set():
                try:
                    aggregate: Counter = app.repository.get(aggregate_id)
                    aggregate.increment()
                    try:
                        app.save(aggregate)
                    except IntegrityError:
                        conflicts[index] += 1
                        time.sleep(0.001)
                        continue
                    saves[index] += 1
                    time.sleep(0.0001)
                except Exception as error:  # anything else ends the run as a failure
                    errors.append(error)
                    stop.set()

        workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        stop.wait(seconds)
        stop.set()
        elapsed = time.perf_counter() - began
        for worker in workers:
            worker.join(60)
        if errors:
            raise errors[0]
        total = sum(saves)
        # Every successful save stored exactly one event, and nothing else did.
        final = app.repository.get(aggregate_id)
        assert final.version == 1 + total, (final.version, total)
        assert final.value == total, (final.value, total)
        return {
            "saves": total,
            "seconds": elapsed,
            "saves_per_s": total / elapsed,
            "conflicts": sum(conflicts),
            "threads_that_saved": sum(1 for n in saves if n),
        }
    finally:
        app.close()
        drop_schema(db, schema)


def run(database: Database, seconds: float, threads: int = 100) -> dict[str, Any]:
    """Both recorders without and with the aggregate cache, `seconds` each.

    Returns {"no_cache": {...}, "cache": {...}, "seconds", "threads"}; each case
    holds "group" and "default" (saves/s, ours and the library's), "ratio"
    (group / default) and "details" (per-recorder counts).
    """
    result: dict[str, Any] = {"seconds": seconds, "threads": threads}
    for case, extra_env in CACHES.items():
        details = {
            name: run_one(database, topic, extra_env, seconds, threads)
            for name, topic in RECORDERS.items()
        }
        group, default = details["group"]["saves_per_s"], details["default"]["saves_per_s"]
        result[case] = {
            "group": group,
            "default": default,
            "ratio": group / default if default else float("inf"),
            "details": details,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per recorder and case")
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    db = resolve(os.environ.get("DATABASE_URL"), ROOT / ".darkroom" / "bench-pg")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {args.threads} threads · "
        f"{args.seconds:g} s per run · load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    result = run(db, args.seconds, args.threads)
    print(
        f"{'case':<9} {'group saves/s':>13} {'default saves/s':>15} {'ratio':>6} "
        f"{'conflicts g/d':>15}"
    )
    ok = True
    for case in CACHES:
        r = result[case]
        d = r["details"]
        print(
            f"{case:<9} {r['group']:>13.1f} {r['default']:>15.1f} {r['ratio']:>5.2f}x "
            f"{d['group']['conflicts']:>7}/{d['default']['conflicts']:<7}"
        )
        ok = ok and r["group"] >= r["default"]
    print("group commit at least as fast as the library's recorder: " + ("OK" if ok else "FAILED"))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

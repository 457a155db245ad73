"""The cost of one heartbeat in the pulse, with and without a report (status, model, VRAM).

    python bench/pulse_cost.py [--workers 20] [--beats 100]

`--workers` workers each beat `--beats` times, 6 s apart (every beat is written) and
1 s apart (one in five is written: `darkroom.pulse.WRITE_EVERY`), once with no report
and once with a report whose VRAM changes every beat. Prints microseconds per beat.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkroom.database import create_schema, drop_schema, resolve
from darkroom.pulse import PostgresPulse
from darkroom.wiring import build_studio
from domain.pulse import NO_REPORT, Report


def run(
    pulse: PostgresPulse,
    label: str,
    apart: int,
    workers: int,
    beats: int,
    report: Callable[[int], Report],
) -> None:
    start = datetime.now(UTC)
    began = time.perf_counter()
    for beat in range(beats):
        for w in range(workers):
            pulse.touch(
                f"{label}-{apart}-{w}", start + timedelta(seconds=apart * beat), report(beat)
            )
    per = (time.perf_counter() - began) / (workers * beats) * 1e6
    print(f"{label:>9} beats {apart} s apart: {per:6.0f} us/beat")


@contextmanager
def scratch_pulse() -> Iterator[PostgresPulse]:
    """A wired studio's pulse in a schema of its own, dropped afterwards."""
    db = resolve(os.environ.get("DATABASE_URL"), Path(".darkroom/bench-pg"))
    schema = f"bench_pulse_{uuid.uuid4().hex[:8]}"
    create_schema(db, schema)
    studio = build_studio(db, schema, pool_size=2)
    try:
        assert isinstance(studio.pulse, PostgresPulse)
        yield studio.pulse
    finally:
        studio.close()
        drop_schema(db, schema)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--beats", type=int, default=100)
    args = parser.parse_args()
    with scratch_pulse() as pulse:
        for apart in (6, 1):
            run(pulse, "no report", apart, args.workers, args.beats, lambda b: NO_REPORT)
            run(
                pulse,
                "report",
                apart,
                args.workers,
                args.beats,
                lambda b: Report("busy", "wan-2.2", 20_000 + b, 24_000),
            )


if __name__ == "__main__":
    main()

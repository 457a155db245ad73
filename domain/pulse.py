"""Where heartbeats go: a last-seen time per worker, kept outside the event log.

A worker heartbeats every 10-20 s for as long as it runs. As events that was up to
8,640 a day per worker (≈ 3.2M a year, ≈ 1 GB of log) that no reader needs one by
one. The log keeps what a sweep decides and why: a worker's registration, the tasks
it takes and releases, and `Worker.Lost` with the last-seen time the sweep used.
The heartbeats themselves only move a time forward, here, with what the worker last
said about itself (`Report`: status, loaded model, VRAM), which only the workers
listing reads.

`MemoryPulse` serves one process (and the pure domain tests); a studio wired by
`darkroom.wiring` uses `darkroom.pulse:PostgresPulse`, shared by every process on
the database (set by `PULSE_TOPIC` in the studio's environment).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Report:
    """What a worker says about itself in a heartbeat; a field it leaves out (None)
    keeps the value it reported before."""

    status: str | None = None
    current_model: str | None = None
    vram_used_mb: int | None = None
    vram_total_mb: int | None = None

    def over(self, before: Report | None) -> Report:
        """This report with the fields it leaves out taken from `before`."""
        if before is None:
            return self
        kept = {
            f.name: getattr(before, f.name) for f in fields(self) if getattr(self, f.name) is None
        }
        return replace(self, **kept)


NO_REPORT = Report()


@dataclass(frozen=True)
class Beat:
    """A worker's latest heartbeat: when, and what it reported."""

    worker_id: str
    last_seen: datetime
    report: Report


class Pulse(Protocol):
    def touch(self, worker_id: str, at: datetime, report: Report = NO_REPORT) -> None:
        """The worker was alive at `at` (an earlier time than the one kept changes nothing)
        and said `report` about itself."""

    def last_seen(self, worker_id: str) -> datetime | None:
        """The latest time the worker was seen alive, or None if never touched."""

    def beats(self, since: datetime) -> list[Beat]:
        """The workers seen alive at or after `since`, with their latest reports."""


class MemoryPulse:
    """A pulse for one process."""

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}
        self._reports: dict[str, Report] = {}
        self._lock = threading.Lock()

    def touch(self, worker_id: str, at: datetime, report: Report = NO_REPORT) -> None:
        with self._lock:
            known = self._seen.get(worker_id)
            if known is None or at > known:
                self._seen[worker_id] = at
                self._reports[worker_id] = report.over(self._reports.get(worker_id))

    def last_seen(self, worker_id: str) -> datetime | None:
        return self._seen.get(worker_id)

    def beats(self, since: datetime) -> list[Beat]:
        with self._lock:
            return [
                Beat(w, at, self._reports.get(w, NO_REPORT))
                for w, at in self._seen.items()
                if at >= since
            ]

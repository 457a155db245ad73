"""Where heartbeats go: a last-seen time per worker, kept outside the event log.

A worker heartbeats every 10-20 s for as long as it runs. As events that was up to
8,640 a day per worker (≈ 3.2M a year, ≈ 1 GB of log) that no reader needs one by
one. The log keeps what a sweep decides and why: a worker's registration, the tasks
it takes and releases, and `Worker.Lost` with the last-seen time the sweep used.
The heartbeats themselves only move a time forward, here.

`MemoryPulse` serves one process (and the pure domain tests); a studio wired by
`darkroom.wiring` uses `darkroom.pulse:PostgresPulse`, shared by every process on
the database (set by `PULSE_TOPIC` in the studio's environment).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Protocol


class Pulse(Protocol):
    def touch(self, worker_id: str, at: datetime) -> None:
        """The worker was alive at `at` (an earlier time than the one kept changes nothing)."""

    def last_seen(self, worker_id: str) -> datetime | None:
        """The latest time the worker was seen alive, or None if never touched."""


class MemoryPulse:
    """A pulse for one process."""

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def touch(self, worker_id: str, at: datetime) -> None:
        with self._lock:
            known = self._seen.get(worker_id)
            if known is None or at > known:
                self._seen[worker_id] = at

    def last_seen(self, worker_id: str) -> datetime | None:
        return self._seen.get(worker_id)

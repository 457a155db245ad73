"""Snapshots are inserted from a thread of their own, off the commands' critical path."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

log = logging.getLogger("darkroom.snapshots")


class SnapshotWriter:
    """Inserts snapshots from a thread of its own, off the commands' critical path.

    Measured: a snapshot insert costs 2-4 ms (its own commit), as much as the
    command that crossed the interval. The command encodes the snapshot (its
    state as of the version it saved, ≈ 50 µs) and queues it; this thread inserts
    whatever is queued in one call. A full queue, or a closed writer, drops the
    snapshot (logged): snapshots are a cache, and the next interval takes another.
    """

    def __init__(
        self, store: Any, capacity: int = 1_000, prune: Callable[[list[UUID]], object] | None = None
    ) -> None:
        self.store = store
        # Called with the aggregates of each stored batch: deletes the snapshots loads
        # no longer need (darkroom.housekeeping.SnapshotPruner when wired).
        self.prune = prune
        self.written = 0
        self._queue: queue.Queue[Any] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def put(self, snapshots: list[Any]) -> None:
        if self._closed:
            return
        stored = [self.store.mapper.to_stored_event(s) for s in snapshots]
        try:
            self._queue.put_nowait(stored)
        except queue.Full:
            log.warning("snapshot queue full: %d snapshots dropped", len(stored))
            return
        self._start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued snapshot is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (for up to `timeout` s), then stop; later snapshots are
        dropped. Never blocks past the timeout, whatever the database does."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        self.flush(timeout)
        thread.join(max(0.0, timeout))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closed:
                    return
                continue
            batch, taken = list(item), 1
            while True:
                try:
                    batch += self._queue.get_nowait()
                    taken += 1
                except queue.Empty:
                    break
            try:
                self._insert(batch)
                if self.prune is not None:
                    self.prune([stored.originator_id for stored in batch])
            except Exception:
                log.exception("snapshots not pruned (the table keeps a few more rows)")
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    def _insert(self, batch: list[Any]) -> None:
        try:
            self.store.recorder.insert_events(batch)
            self.written += len(batch)
            return
        except IntegrityError:
            if len(batch) == 1:  # another process stored the same version first
                return
        except Exception:
            if len(batch) == 1:
                log.exception(
                    "snapshot of %s v%d not stored (loads replay more until the next)",
                    batch[0].originator_id,
                    batch[0].originator_version,
                )
                return
        for one in batch:  # one bad row must not cost the others
            self._insert([one])

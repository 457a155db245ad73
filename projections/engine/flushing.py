"""The runner's write side: a batch collected, handed to the writer process (at
most `IN_FLIGHT` in flight, committed in order) or committed inline, and what
follows a commit. Used by `Runner`; see projections/runner.py and docs.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from projections import changelog
from projections.engine.pages import IDLE_TICK
from projections.engine.writer import Batch, DeadLetter, WriterProcess, write_batch
from projections.errors import WriterGoneError

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

    from projections.views.base import View

log = logging.getLogger("darkroom.projections")

PRUNE_EVERY = 600.0  # seconds between change-log retention passes
# Batches handed to the writer process and not yet confirmed: two let the folding
# go on while the writer is slow for a moment (its PostgreSQL shares the cores).
IN_FLIGHT = 2


class FlushMixin:
    """Writes what the runner folded: rows, change log, dead letters, positions."""

    managed: bool
    threaded: bool
    conninfo: str
    schema: str
    durable_commits: bool
    views: list[View]
    sinks: dict[str, Any]
    position: int
    changes: list[changelog.Entry]
    dead: list[DeadLetter]
    retried: list[tuple[str, int]]
    retention: timedelta | None
    changelog_enabled: bool
    batches: int
    committed: int
    batch_size: int
    on_batch: Callable[[int], None] | None
    _writer: psycopg.Connection[Any] | None
    _reader: psycopg.Connection[Any] | None
    _process: WriterProcess | None
    _inflight: deque[Batch]
    _failed_batch: Batch | None
    _flushed_to: int
    _last_tick: float
    _last_prune: float
    _expired_before: datetime | None
    _isolating: bool
    _isolate_until: int
    _normal_batch_size: int

    if TYPE_CHECKING:  # provided by HandoverMixin and DeadLetterMixin

        def _handover_pending(self) -> bool: ...
        def _handovers(self, cur: Any, position: int) -> list[Callable[[], None]]: ...
        def _retries_requested(self) -> bool: ...
        def _retry_dead_letters(self) -> None: ...

    def flush(self) -> None:
        """Write the batch: rows, change log, dead letters, positions; one transaction.

        Normally the transaction runs in the writer process while the next
        batches are folded (at most `IN_FLIGHT`, committed in order). Every
        `IDLE_TICK` a flush runs synchronously and also serves dead-letter
        retries and rebuild hand-overs.
        """
        now = time.monotonic()
        tick = False
        if self.managed and now - self._last_tick >= IDLE_TICK:
            self._last_tick = now
            tick = self._handover_pending() or self._retries_requested()
            if (
                self.retention is not None
                and self.changelog_enabled
                and now - self._last_prune >= PRUNE_EVERY
            ):
                self._last_prune = now
                self._prune()
            if tick:
                self._settle()
                self._retry_dead_letters()
        if not tick and self.position == self._flushed_to and not self.dead:
            return  # idle: nothing to write
        self._flushed_to = self.position
        batch = self._collect()
        if tick or not self.threaded:
            self._settle()
            self._after(batch, self._commit(batch, handovers=tick))
            return
        while len(self._inflight) >= IN_FLIGHT:
            self._settle_one()
        if self._process is None:
            self._process = WriterProcess(self.conninfo, self.schema, durable=self.durable_commits)
        try:
            self._process.submit(batch)
        except WriterGoneError:
            self._inflight.clear()  # none of them is confirmed: all are redone
            raise
        self._inflight.append(batch)

    def start_writer(self) -> None:
        """Start the writer process now instead of at the first batch: a runner made while
        its database is down then writes the moment the database is back (the child
        connects with its first batch)."""
        if self.threaded and self._process is None:
            self._process = WriterProcess(self.conninfo, self.schema, durable=self.durable_commits)
            self._process.start()

    def _collect(self) -> Batch:
        if self.retention is not None:
            self._expired_before = datetime.now(UTC) - self.retention
        ops = [
            (v.name, sink.version, sink.names, v.take())
            for v in self.views
            if not (sink := self.sinks[v.name]).frozen
        ]
        batch = Batch(self.position, ops, self.changes, self.dead, self.retried)
        self.changes, self.dead, self.retried = [], [], []
        return batch

    def _settle(self) -> None:
        """Wait for every batch in flight (re-raising an error) and run their after-commits."""
        while self._inflight:
            self._settle_one()

    def _settle_one(self) -> None:
        batch = self._inflight.popleft()
        assert self._process is not None
        try:
            self._process.wait()
        except Exception:
            self._failed_batch = batch
            self._inflight.clear()  # later ones were not written: they are redone
            raise
        self._after(batch, [])

    def _after(self, batch: Batch, actions: list[Callable[[], None]]) -> None:
        # The caches hold hundreds of thousands of long-lived objects: keep the
        # cyclic GC from rescanning them on every collection (they are acyclic).
        gc.freeze()
        for view in self.views:
            view.flushed()
        self.batches += 1
        self.committed = batch.position
        if self._isolating and batch.position >= self._isolate_until:
            self._isolating = False
            self.batch_size = self._normal_batch_size
        for action in actions:
            action()
        if self.on_batch is not None:
            self.on_batch(batch.position)

    def _commit(self, batch: Batch, handovers: bool) -> list[Callable[[], None]]:
        try:
            return self._commit_batch(batch, handovers)
        except Exception:
            self._failed_batch = batch
            raise

    def _commit_batch(self, batch: Batch, handovers: bool) -> list[Callable[[], None]]:
        conn = self._writer
        assert conn is not None
        with conn.transaction():
            cur = conn.cursor()
            actions = self._handovers(cur, batch.position) if handovers else []
            write_batch(cur, batch)
        return actions

    def _prune(self) -> None:
        """Apply the change log's retention (the runner that writes it prunes it)."""
        assert self._reader is not None and self.retention is not None
        try:
            pruned = changelog.prune(self._reader, self.retention)
        except Exception:
            log.exception("pruning the change log failed; retrying at the next interval")
        else:
            if pruned:
                log.info("pruned %s change rows older than %s", pruned, self.retention)

"""The flusher: a collected batch handed to the writer process (at most `IN_FLIGHT`
in flight, committed in order) or committed inline, and what follows a commit.
Used by `Runner`; see projections/engine/runner.py and docs/PROJECTIONS.md.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from projections import changelog
from projections.engine.writer import Batch, WriterProcess, write_batch
from projections.errors import WriterGoneError

if TYPE_CHECKING:
    import psycopg

    from projections.views.base import View

log = logging.getLogger("darkroom.projections")

PRUNE_EVERY = 600.0  # seconds between change-log retention passes
# Batches handed to the writer process and not yet confirmed: two let the folding
# go on while the writer is slow for a moment (its PostgreSQL shares the cores).
IN_FLIGHT = 2

Actions = list[Callable[[], None]]
# Run inside a batch's transaction before its rows (the rebuild hand-over): returns
# what to do once the batch committed.
Before = Callable[["psycopg.Cursor[Any]", int], Actions]


class Flusher:
    """Writes batches and counts them; `after` runs each commit's follow-ups in order."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        views: Sequence[View],
        *,
        durable: bool,
        retention: timedelta | None,
        on_commit: Callable[[int], None],
        on_batch: Callable[[int], None] | None,
        now: float,
    ) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.views = list(views)
        self.durable = durable
        self.retention = retention
        self.on_commit = on_commit
        self.on_batch = on_batch
        self.batches = 0
        self.committed = 0
        self.process: WriterProcess | None = None
        self.inflight: deque[Batch] = deque()
        self.failed: Batch | None = None
        self._last_prune = now

    def submit(self, batch: Batch) -> None:
        """Hand `batch` to the writer process (started on first use), at most
        `IN_FLIGHT` unconfirmed: waits for the oldest past that."""
        while len(self.inflight) >= IN_FLIGHT:
            self.settle_one()
        if self.process is None:
            self.process = WriterProcess(self.conninfo, self.schema, durable=self.durable)
        try:
            self.process.submit(batch)
        except WriterGoneError:
            self.inflight.clear()  # none of them is confirmed: all are redone
            raise
        self.inflight.append(batch)

    def start_writer(self) -> None:
        if self.process is None:
            self.process = WriterProcess(self.conninfo, self.schema, durable=self.durable)
            self.process.start()

    def settle(self) -> None:
        """Wait for every batch in flight (re-raising an error) and run their after-commits."""
        while self.inflight:
            self.settle_one()

    def settle_within(self, timeout: float) -> None:
        """`settle` the batches in flight whose outcome arrives within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.inflight:
            assert self.process is not None
            if not self.process.answered(max(0.0, deadline - time.monotonic())):
                return
            self.settle_one()

    def settle_one(self) -> None:
        batch = self.inflight.popleft()
        assert self.process is not None
        try:
            self.process.wait()
        except Exception:
            self.failed = batch
            self.inflight.clear()  # later ones were not written: they are redone
            raise
        self.after(batch, [])

    def abandon(self) -> None:
        """Forget the batches in flight after a failure; wait until the writer process
        has answered for each (they must end before the tables are read back)."""
        self.inflight.clear()
        while self.process is not None and self.process.pending:
            try:
                self.process.wait()
            except WriterGoneError:
                break
            except Exception:
                continue

    def after(self, batch: Batch, actions: Actions) -> None:
        # The caches hold hundreds of thousands of long-lived objects: keep the
        # cyclic GC from rescanning them on every collection (they are acyclic).
        gc.freeze()
        for view in self.views:
            view.flushed()
        self.batches += 1
        self.committed = batch.position
        self.on_commit(batch.position)
        for action in actions:
            action()
        if self.on_batch is not None:
            self.on_batch(batch.position)

    def commit(self, conn: psycopg.Connection[Any], batch: Batch, before: Before | None) -> Actions:
        """Write `batch` inline on `conn`, in one transaction (after `before`, if any)."""
        try:
            with conn.transaction():
                cur = conn.cursor()
                actions = before(cur, batch.position) if before is not None else []
                write_batch(cur, batch)
            return actions
        except Exception:
            self.failed = batch
            raise

    def prune_due(self, reader: psycopg.Connection[Any], now: float) -> None:
        """Apply the change log's retention every `PRUNE_EVERY` seconds (the runner that
        writes it prunes it)."""
        if self.retention is None or now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            pruned = changelog.prune(reader, self.retention)
        except Exception:
            log.exception("pruning the change log failed; retrying at the next interval")
        else:
            if pruned:
                log.info("pruned %s change rows older than %s", pruned, self.retention)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def close(self) -> None:
        if self.process is not None:
            self.process.close()
            self.process = None

"""The projection runner: read the log in pages, fold, render, write in batches.

One runner hosts several views. Per event it decodes once, folds the event
into the shared aggregate cache and hands it to every view that wants it;
each view renders the rows the event changed (and emits change-log rows). Per
batch (at most `batch_size` events or `batch_latency` seconds) it writes every
touched row once, the change log, the dead letters and every view's tracking
position in ONE transaction: a crash anywhere repeats the whole batch or none
of it. Events no view wants still advance the positions.

The runner follows the log and decides when to flush; the work is done by its
collaborators, each with its own state: the `Batcher` (fold, render, collect
a batch, batch size), the `Flusher` (write batches, inline or in the writer
process), the `Handover` (rebuild hand-overs) and the `DeadLetters`.

`managed=True` (the deployment mode): versions come from `projection_registry`,
each view is owned through an advisory lock (a second runner waits as a
standby), the change log is written, dead-letter retries and rebuild
hand-overs are served. `managed=False` is the rebuild mode: explicit versions,
no change log, no registry.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from projections import changelog, db
from projections.engine.aggregates import DEFAULT_CAPACITY, AggregateCache
from projections.engine.batcher import Batcher, Sink
from projections.engine.deadletters import DeadLetters
from projections.engine.flusher import Flusher
from projections.engine.handover import Handover, RestartRequiredError
from projections.engine.locks import ViewLocks
from projections.engine.pages import END, IDLE_TICK, PageReader
from projections.engine.tables import prepare

if TYPE_CHECKING:
    from eventsourcing.application import Application

    from projections.engine.writer import Batch, WriterProcess
    from projections.views.base import View

log = logging.getLogger("darkroom.projections")

BATCH_SIZE = 2_000
BATCH_LATENCY = 0.05
PAGE_SIZE = 1_000


class Runner:
    """Hosts views; see the module docstring."""

    def __init__(
        self,
        app: Application[Any],
        conninfo: str,
        schema: str,
        views: Sequence[View],
        *,
        managed: bool = True,
        versions: dict[str, int] | None = None,
        changelog_enabled: bool | None = None,
        batch_size: int = BATCH_SIZE,
        batch_latency: float = BATCH_LATENCY,
        page_size: int = PAGE_SIZE,
        cache_capacity: int = DEFAULT_CAPACITY,
        on_batch: Callable[[int], None] | None = None,
        threaded: bool = True,
        retention: timedelta | None = changelog.RETENTION,
        durable_commits: bool = False,
    ) -> None:
        self.app = app
        self.conninfo = conninfo
        self.schema = schema
        self.views = list(views)
        self.by_name = {v.name: v for v in self.views}
        self.managed = managed
        self.explicit_versions = dict(versions or {})
        self.changelog_enabled = managed if changelog_enabled is None else changelog_enabled
        self.batch_latency = batch_latency
        self.page_size = page_size
        self.threaded = threaded
        self.durable_commits = durable_commits
        self.cache = AggregateCache(app, cache_capacity)
        self.sinks: dict[str, Sink] = {}
        self.dead_letters = DeadLetters(app, self.views, self.cache)
        self.batcher = Batcher(
            app,
            self.views,
            self.cache,
            self.dead_letters,
            size=batch_size,
            changelog_enabled=self.changelog_enabled,
            retention=retention,
        )
        self.flusher = Flusher(
            conninfo,
            schema,
            self.views,
            durable=durable_commits,
            retention=retention,
            on_commit=self.batcher.committed,
            on_batch=on_batch,
            now=time.monotonic(),
        )
        self.handover = Handover(schema, self.views, self.sinks)
        self.locks = ViewLocks(conninfo, schema, self.views)
        self.stopping = threading.Event()
        self._writer: psycopg.Connection[Any] | None = None
        self._reader: psycopg.Connection[Any] | None = None
        self._last_tick = 0.0
        self._flushed_to = -1

    # What the collaborators count, read where the runner is (tests, benches, logs).
    @property
    def position(self) -> int:
        return self.batcher.position

    @property
    def batch_size(self) -> int:
        return self.batcher.size

    @property
    def events_processed(self) -> int:
        return self.batcher.events_processed

    @property
    def batches(self) -> int:
        return self.flusher.batches

    @property
    def committed(self) -> int:
        return self.flusher.committed

    @property
    def _process(self) -> WriterProcess | None:
        return self.flusher.process

    # ------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Connect, create bookkeeping and view tables, read positions."""
        self._writer = db.connect(self.conninfo, self.schema, autocommit=True)
        if not self.durable_commits:
            # Views are derived: a server crash that loses the last batches also
            # loses their tracking rows (same WAL), so they are replayed, to the
            # same rows. Not waiting for the WAL flush per batch is safe here.
            self._writer.execute("SET synchronous_commit = off")
        self._reader = db.connect(self.conninfo, self.schema, autocommit=True)
        prepare(self._writer, self.views, managed=self.managed, versions=self.explicit_versions)
        self._bind(self.explicit_versions)
        self._writer.autocommit = False

    def _bind(self, unmanaged: dict[str, int]) -> None:
        """Each view's sink at the version that serves (managed) or at `unmanaged`'s."""
        assert self._reader is not None
        versions = self.handover.registry_versions(self._reader) if self.managed else unmanaged
        for view in self.views:
            names = db.names_for(view.tables, versions[view.name])
            self.sinks[view.name] = Sink(versions[view.name], names=names)
            view.bind(self._reader, names)

    def close(self) -> None:
        if self.flusher.inflight:
            try:
                self.flusher.settle()
            except Exception:
                log.exception("the last batch failed while closing")
        self.flusher.close()
        self.locks.release()
        for conn in (self._writer, self._reader):
            if conn is not None and not conn.closed:
                conn.close()
        self._writer = self._reader = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        self.stopping.set()

    def kill_writer(self) -> None:
        """Stop the writer process now, from any thread: a runner blocked waiting for
        it (a stuck transaction, say) gets `WriterGoneError` and can be closed."""
        self.flusher.kill()

    def start_writer(self) -> None:
        """Start the writer process now instead of at the first batch: a runner made while
        its database is down then writes the moment the database is back (the child
        connects with its first batch)."""
        if self.threaded:
            self.flusher.start_writer()

    def acquire(self, *, wait: bool = False, poll: float = 1.0) -> None:
        """Own every hosted view (advisory locks) or none; `wait=True` is the standby."""
        self.locks.acquire(self.stopping, wait=wait, poll=poll)

    # ------------------------------------------------------------- running
    def run_forever(self) -> None:
        """Standby until the views are ours, then follow the log until `stop()`."""
        if self.managed:
            self.acquire(wait=True)
        if self._writer is None:
            self.open()
        else:
            # Opened before the locks were ours (a standby): versions may have
            # changed meanwhile; start from what the tables say now.
            self._recover(None)
        self._align()
        self._follow(stop_at=None)

    def catch_up(self, stop_at: int | None = None) -> int:
        """Process up to `stop_at` (default: the head now); returns the position."""
        if self._writer is None:
            self.open()
        self._align()
        head = stop_at if stop_at is not None else self._head()
        if head > self.position:
            self._follow(stop_at=head)
        return self.position

    def _head(self) -> int:
        recorder: Any = self.app.recorder
        if hasattr(recorder, "head_position"):
            return int(recorder.head_position())
        return int(recorder.max_notification_id() or 0)

    def _positions(self) -> dict[str, int]:
        assert self._reader is not None
        return {
            name: db.tracked_position(self._reader, name, sink.version)
            for name, sink in self.sinks.items()
        }

    def _align(self) -> None:
        """Bring every hosted view to one position (a lagging one catches up alone)."""
        positions = self._positions()
        while len(set(positions.values())) > 1:
            low = min(positions.values())
            target = min(p for p in positions.values() if p > low)
            lagging = [self.by_name[n] for n, p in positions.items() if p == low]
            sub = Runner(
                self.app,
                self.conninfo,
                self.schema,
                [type(v)() for v in lagging],
                managed=False,
                versions={v.name: self.sinks[v.name].version for v in lagging},
                changelog_enabled=False,
                batch_size=self.batch_size,
                page_size=self.page_size,
            )
            with sub:
                sub.catch_up(stop_at=target)
            positions = self._positions()
        self.batcher.position = self.cache.position = next(iter(positions.values()), 0)

    def _follow(self, stop_at: int | None) -> None:
        while True:
            reader = PageReader(self.app, self.position, self.page_size, stop_at, self.conninfo)
            reader.start()
            try:
                self._loop(reader)
                self.flusher.settle()
                return
            except RestartRequiredError as why:
                log.info("reloading the runner's state: %s", why)
                self._recover(None)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
                if any(sink.frozen for sink in self.sinks.values()):
                    raise  # pending hand-over rows live only in memory: restart cleanly
                self._recover(error)
            finally:
                reader.stop()
                reader.join(timeout=5)

    def _recover(self, error: Exception | None) -> None:
        """Forget everything uncommitted and reload from the tables. After a write
        error, replay one event per batch up to where it failed: the event whose own
        batch fails is dead-lettered for every view and skipped, the rest go on."""
        failed = self.flusher.failed
        self.flusher.failed = None
        self.flusher.abandon()
        if (
            error is not None
            and failed is not None
            and self.batch_size == 1
            and self.batcher.isolating
        ):
            assert self._writer is not None
            self.dead_letters.skip_poison(self._writer, self.sinks, failed.position, error)
        elif error is not None:
            log.warning("a batch up to position %s failed (%s): isolating it", self.position, error)
            self.batcher.isolate()
        self.batcher.forget()
        for view in self.views:
            view.reset()
        self._bind({name: sink.version for name, sink in self.sinks.items()})
        self._flushed_to = -1
        self._align()

    def _loop(self, reader: PageReader) -> None:
        pending = 0
        deadline = 0.0
        while not self.stopping.is_set():
            wait = max(0.0, deadline - time.monotonic()) if pending else IDLE_TICK
            try:
                page = reader.pages.get(timeout=wait)
            except queue.Empty:
                if pending or self.managed:
                    self.flush()
                    pending = 0
                continue
            if isinstance(page, BaseException):
                raise page
            if page is END:
                self.flush()
                return
            process = self.batcher.process
            for notification in page:
                process(notification)
                pending += 1
                if pending >= self.batcher.size:
                    self.flush()
                    pending = 0
            if pending and not deadline:
                deadline = time.monotonic() + self.batch_latency
            # Caught up: write now rather than wait for more (latency); while
            # events keep coming, batches fill up during the commit in flight.
            at_head = reader.at_head and reader.pages.empty()
            if pending and at_head and self.flusher.inflight:
                # A batch is still being written and this one would commit after it
                # anyway: wait for that commit (up to the deadline), and events that
                # arrive meanwhile join this batch rather than a small one of their own.
                self.flusher.settle_within(deadline - time.monotonic())
                if not reader.pages.empty() and time.monotonic() < deadline:
                    continue
            if pending and (at_head or time.monotonic() >= deadline):
                self.flush()
                pending = 0
            if not pending:
                deadline = 0.0
        if pending:
            self.flush()

    # ---------------------------------------------------------------- writing
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
            assert self._reader is not None
            tick = self.handover.pending(self._reader) or self.dead_letters.requested(self._reader)
            if self.changelog_enabled:
                self.flusher.prune_due(self._reader, now)
            if tick:
                self.flusher.settle()
                self.dead_letters.retry_requested(self._reader, self.position)
        if not tick and self.position == self._flushed_to and not self.dead_letters.dead:
            return  # idle: nothing to write
        self._flushed_to = self.position
        batch = self.batcher.collect(self.sinks)
        if tick or not self.threaded:
            self.flusher.settle()
            self._commit(batch, handovers=tick)
            return
        self.flusher.submit(batch)

    def _commit(self, batch: Batch, *, handovers: bool) -> None:
        """Write `batch` inline (serving hand-overs first when asked) and follow it up."""
        assert self._writer is not None
        reader, writer = self._reader, self._writer

        def serve(cur: psycopg.Cursor[Any], position: int) -> list[Callable[[], None]]:
            assert reader is not None
            return self.handover.serve(cur, position, reader, writer)

        actions = self.flusher.commit(writer, batch, serve if handovers else None)
        self.flusher.after(batch, actions)

    def retry_dead_letters(self) -> None:
        """Serve retry requests now (synchronously), e.g. when no live runner does."""
        self._align()
        self.flusher.settle()
        assert self._reader is not None
        self.dead_letters.retry_requested(self._reader, self.position)
        self._commit(self.batcher.collect(self.sinks), handovers=False)

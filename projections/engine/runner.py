"""The projection runner: read the log in pages, fold, render, write in batches.

One runner hosts several views. Per event it decodes once, folds the event
into the shared aggregate cache and hands it to every view that wants it;
each view renders the rows the event changed (and emits change-log rows). Per
batch (at most `batch_size` events or `batch_latency` seconds) it writes every
touched row once, the change log, the dead letters and every view's tracking
position in ONE transaction: a crash anywhere repeats the whole batch or none
of it. Events no view wants still advance the positions.

`managed=True` (the deployment mode): versions come from `projection_registry`,
each view is owned through an advisory lock (a second runner waits as a
standby), the change log is written, dead-letter retries and rebuild
hand-overs are served. `managed=False` is the rebuild mode: explicit versions,
no change log, no registry.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from projections import changelog, db
from projections.engine import fastio
from projections.engine.aggregates import DEFAULT_CAPACITY, AggregateCache
from projections.engine.deadletters import DeadLetterMixin
from projections.engine.fastio import Note
from projections.engine.flushing import FlushMixin
from projections.engine.handover import HandoverMixin, RestartRequiredError
from projections.engine.pages import END, IDLE_TICK, PageReader
from projections.engine.tables import prepare
from projections.engine.writer import Batch, DeadLetter, WriterProcess
from projections.errors import LockNotAcquiredError, WriterGoneError
from projections.views.base import Context, View

if TYPE_CHECKING:
    from eventsourcing.application import Application
    from eventsourcing.persistence import Notification

log = logging.getLogger("darkroom.projections")

BATCH_SIZE = 2_000
BATCH_LATENCY = 0.05
PAGE_SIZE = 1_000


@dataclass
class Sink:
    """Where a view's rows go: a version's tables; frozen while a rebuild hands over."""

    version: int
    frozen: bool = False
    names: dict[str, str] = field(default_factory=dict)


Route = tuple[bool, list[tuple[View, Callable[..., None], Callable[..., Any] | None]], bool]


class Runner(HandoverMixin, DeadLetterMixin, FlushMixin):
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
        self.batch_size = batch_size
        self.batch_latency = batch_latency
        self.page_size = page_size
        self.cache = AggregateCache(app, cache_capacity)
        self.ctx = Context(self.cache)
        self.on_batch = on_batch
        self.position = 0
        self.sinks: dict[str, Sink] = {}
        self.changes: list[changelog.Entry] = []
        self.dead: list[DeadLetter] = []
        self.retried: list[tuple[str, int]] = []
        self.routes: dict[str, Route] = {}
        self._fold_prefixes = {
            getattr(c, "TOPIC", "").rsplit(".", 1)[0] for v in self.views for c in v.event_classes()
        }
        self.stopping = threading.Event()
        self.events_processed = 0
        self.batches = 0
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._writer: psycopg.Connection[Any] | None = None
        self._reader: psycopg.Connection[Any] | None = None
        self._last_tick = 0.0
        self._failed_batch: Batch | None = None
        self._isolating = False
        self._isolate_until = 0
        self._normal_batch_size = batch_size
        self._flushed_to = -1
        self._last_prune = time.monotonic()
        self.retention = retention
        self._expired_before: datetime | None = (
            None if retention is None else datetime.now(UTC) - retention
        )
        self.durable_commits = durable_commits
        self.threaded = threaded
        self.committed = 0
        self._process: WriterProcess | None = None
        self._inflight: deque[Batch] = deque()
        self.mapper = fastio.fast_mapper(app)

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
        versions = self._registry_versions() if self.managed else self.explicit_versions
        for view in self.views:
            names = db.names_for(view.tables, versions[view.name])
            self.sinks[view.name] = Sink(versions[view.name], names=names)
            view.bind(self._reader, names)
        self._writer.autocommit = False

    def close(self) -> None:
        if self._inflight:
            try:
                self._settle()
            except Exception:
                log.exception("the last batch failed while closing")
        if self._process is not None:
            self._process.close()
            self._process = None
        if self._lock_conn is not None and not self._lock_conn.closed:
            # Released now rather than when the server notices the disconnect,
            # so a standby takes over at once.
            with contextlib.suppress(Exception):
                self._lock_conn.execute("SELECT pg_advisory_unlock_all()")
        for conn in (self._writer, self._reader, self._lock_conn):
            if conn is not None and not conn.closed:
                conn.close()
        self._writer = self._reader = self._lock_conn = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        self.stopping.set()

    def kill_writer(self) -> None:
        """Stop the writer process now, from any thread: a runner blocked waiting for
        it (a stuck transaction, say) gets `WriterGoneError` and can be closed."""
        if self._process is not None:
            self._process.kill()

    def acquire(self, *, wait: bool = False, poll: float = 1.0) -> None:
        """Own every hosted view (advisory locks) or none; `wait=True` is the standby."""
        self._lock_conn = self._lock_conn or psycopg.connect(self.conninfo, autocommit=True)
        keys = sorted(db.lock_key(f"view:{v.name}", self.schema) for v in self.views)
        while True:
            got = []
            for key in keys:
                row = self._lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                if row.fetchone()[0]:  # type: ignore[index]
                    got.append(key)
                else:
                    break
            if len(got) == len(keys):
                return
            for key in got:
                self._lock_conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            if not wait:
                raise LockNotAcquiredError(
                    f"another runner owns one of {[v.name for v in self.views]}"
                )
            if self.stopping.wait(poll):
                raise LockNotAcquiredError("stopped while waiting as a standby")

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
        self.position = next(iter(positions.values()), 0)
        self.cache.position = self.position

    def _follow(self, stop_at: int | None) -> None:
        while True:
            reader = PageReader(self.app, self.position, self.page_size, stop_at, self.conninfo)
            reader.start()
            try:
                self._loop(reader)
                self._settle()
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
        failed = self._failed_batch
        self._failed_batch = None
        self._inflight.clear()
        while self._process is not None and self._process.pending:
            # Whatever they end in, they must end before the tables are read back.
            try:
                self._process.wait()
            except WriterGoneError:
                break
            except Exception:
                continue
        if error is not None and failed is not None and self.batch_size == 1 and self._isolating:
            self._skip_poison(failed.position, error)
        elif error is not None:
            log.warning("a batch up to position %s failed (%s): isolating it", self.position, error)
            self._isolate_until = self.position
            self._isolating = True
            self._normal_batch_size = self.batch_size
            self.batch_size = 1
        self.cache.clear()
        self.changes, self.dead, self.retried = [], [], []
        assert self._reader is not None
        versions = (
            self._registry_versions()
            if self.managed
            else {name: sink.version for name, sink in self.sinks.items()}
        )
        for view in self.views:
            view.reset()
            names = db.names_for(view.tables, versions[view.name])
            self.sinks[view.name] = Sink(versions[view.name], names=names)
            view.bind(self._reader, names)
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
            for notification in page:
                self.process(notification)
                pending += 1
                if pending >= self.batch_size:
                    self.flush()
                    pending = 0
            if pending and not deadline:
                deadline = time.monotonic() + self.batch_latency
            # Caught up: write now rather than wait for more (latency); while
            # events keep coming, batches fill up during the commit in flight.
            at_head = reader.at_head and reader.pages.empty()
            if pending and (at_head or time.monotonic() >= deadline):
                self.flush()
                pending = 0
            if not pending:
                deadline = 0.0
        if pending:
            self.flush()

    # ---------------------------------------------------------- per event
    def _route(self, topic: str) -> Route:
        """Per topic: fold or not, and each interested view's bound handler and capture."""
        route = self.routes.get(topic)
        if route is None:
            fold = topic.rsplit(".", 1)[0] in self._fold_prefixes
            handlers = []
            for view in self.views:
                for cls in view.event_classes():
                    if getattr(cls, "TOPIC", None) == topic:
                        capture = view._capture.get(cls)
                        handlers.append(
                            (
                                view,
                                getattr(view, view._dispatch[cls]),
                                getattr(view, capture) if capture else None,
                            )
                        )
            capturing = any(capture for _, _, capture in handlers)
            route = self.routes[topic] = (fold, handlers, capturing)
        return route

    def process(self, notification: Notification) -> None:
        """Fold one notification and hand it to the views that want it."""
        fold, handlers, capturing = self._route(notification.topic)
        position = notification.id
        self.position = self.cache.position = position
        self.events_processed += 1
        if not fold:
            return
        try:
            event = self.mapper.to_domain_event(notification)
        except Exception as error:
            self.cache.forget(notification.originator_id)
            for view, _, _ in handlers:
                self._dead(view, notification, error)
            return
        self._handle(event, position, handlers, capturing, notification)

    def process_event(self, event: Any, position: int, topic: str) -> None:
        """`process` for an event already decoded (e.g. handed over by the library's
        `ProjectionRunner`, which bench/projections.py compares with this one)."""
        fold, handlers, capturing = self._route(topic)
        self.position = self.cache.position = position
        self.events_processed += 1
        if fold:
            self._handle(
                event,
                position,
                handlers,
                capturing,
                Note(position, event.originator_id, event.originator_version, topic, b""),
            )

    def _handle(
        self, event: Any, position: int, handlers: list[Any], capturing: bool, notification: Any
    ) -> None:
        ctx = self.ctx
        ctx.position = position
        tokens = None
        try:
            ctx.timestamp = getattr(event, "timestamp", None)
            before = self.cache.before(event)
            if capturing:
                tokens = [capture(event, before) if capture else None for _, _, capture in handlers]
            aggregate = self.cache.fold(event, before)
        except Exception as error:
            self.cache.forget(notification.originator_id)
            for view, _, _ in handlers:
                self._dead(view, notification, error)
            return
        changes = ctx.changes = {}
        for index, (view, handle, _) in enumerate(handlers):
            try:
                handle(event, aggregate, tokens[index] if tokens else None, ctx)
            except Exception as error:
                self._dead(view, notification, error)
        if changes and self.changelog_enabled:
            stamp = ctx.timestamp
            if (
                stamp is not None
                and self._expired_before is not None
                and stamp < self._expired_before
            ):
                return  # past retention already: pruning would delete it at once
            for topic, found in changes.items():
                self.changes.append((position, topic, found))

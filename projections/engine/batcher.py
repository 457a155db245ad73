"""The batcher: folds each event into the shared aggregate cache, hands it to the
views that want it and collects what the next batch writes (each view's ops, the
change-log rows, the dead letters and retried letters). It also sizes batches: a
failed batch is replayed one event per batch up to where it failed (isolation)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from projections import changelog
from projections.engine import fastio
from projections.engine.fastio import Note
from projections.engine.writer import Batch
from projections.views.base import Context, View

if TYPE_CHECKING:
    from eventsourcing.application import Application
    from eventsourcing.persistence import Notification

    from projections.engine.aggregates import AggregateCache
    from projections.engine.deadletters import DeadLetters

Handler = tuple[View, Callable[..., None], Callable[..., Any] | None]
Route = tuple[bool, list[Handler], bool]


@dataclass
class Sink:
    """Where a view's rows go: a version's tables; frozen while a rebuild hands over."""

    version: int
    frozen: bool = False
    names: dict[str, str] = field(default_factory=dict)


class Batcher:
    """Per event: decode once, fold, render in every interested view; per batch: collect."""

    def __init__(
        self,
        app: Application[Any],
        views: Sequence[View],
        cache: AggregateCache,
        dead_letters: DeadLetters,
        *,
        size: int,
        changelog_enabled: bool,
        retention: timedelta | None,
    ) -> None:
        self.views = list(views)
        self.cache = cache
        self.ctx = Context(cache)
        self.dead_letters = dead_letters
        self.mapper = fastio.fast_mapper(app)
        self.changelog_enabled = changelog_enabled
        self.retention = retention
        self.expired_before: datetime | None = (
            None if retention is None else datetime.now(UTC) - retention
        )
        self.position = 0
        self.events_processed = 0
        self.changes: list[changelog.Entry] = []
        self.routes: dict[str, Route] = {}
        self._fold_prefixes = {
            getattr(c, "TOPIC", "").rsplit(".", 1)[0] for v in self.views for c in v.event_classes()
        }
        self.size = size
        self.isolating = False
        self._isolate_until = 0
        self._normal_size = size

    # ---------------------------------------------------------- per event
    def route(self, topic: str) -> Route:
        """Per topic: fold or not, and each interested view's bound handler and capture."""
        route = self.routes.get(topic)
        if route is None:
            fold = topic.rsplit(".", 1)[0] in self._fold_prefixes
            handlers: list[Handler] = []
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
        fold, handlers, capturing = self.route(notification.topic)
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
                self.dead_letters.record(view, notification, error)
            return
        self._handle(event, position, handlers, capturing, notification)

    def process_event(self, event: Any, position: int, topic: str) -> None:
        """`process` for an event already decoded (e.g. handed over by the library's
        `ProjectionRunner`, which bench/projections.py compares with this one)."""
        fold, handlers, capturing = self.route(topic)
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
        self,
        event: Any,
        position: int,
        handlers: list[Handler],
        capturing: bool,
        notification: Any,
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
                self.dead_letters.record(view, notification, error)
            return
        changes = ctx.changes = {}
        for index, (view, handle, _) in enumerate(handlers):
            try:
                handle(event, aggregate, tokens[index] if tokens else None, ctx)
            except Exception as error:
                self.dead_letters.record(view, notification, error)
        if changes and self.changelog_enabled:
            stamp = ctx.timestamp
            if (
                stamp is not None
                and self.expired_before is not None
                and stamp < self.expired_before
            ):
                return  # past retention already: pruning would delete it at once
            for topic, found in changes.items():
                self.changes.append((position, topic, found))

    # ---------------------------------------------------------- per batch
    def collect(self, sinks: dict[str, Sink]) -> Batch:
        """The batch up to the current position; what it holds is pending no more."""
        if self.retention is not None:
            self.expired_before = datetime.now(UTC) - self.retention
        ops = [
            (v.name, sink.version, sink.names, v.take())
            for v in self.views
            if not (sink := sinks[v.name]).frozen
        ]
        dead, retried = self.dead_letters.take()
        batch = Batch(self.position, ops, self.changes, dead, retried)
        self.changes = []
        return batch

    def forget(self) -> None:
        """Drop everything not written yet (the runner reloads from the tables)."""
        self.cache.clear()
        self.changes = []
        self.dead_letters.take()

    # ---------------------------------------------------------- batch size
    def isolate(self) -> None:
        """Replay one event per batch up to the current position (a batch failed)."""
        self._isolate_until = self.position
        self.isolating = True
        self._normal_size = self.size
        self.size = 1

    def committed(self, position: int) -> None:
        """A batch up to `position` committed: past the failed one, full batches again."""
        if self.isolating and position >= self._isolate_until:
            self.isolating = False
            self.size = self._normal_size

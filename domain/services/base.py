"""The service-layer machinery every verb method shares.

A command is `decide()`: load aggregates, call their methods, return the
aggregates to save and a JSON-able result. `_command` runs it with the
command's metadata stamped on every event, one atomic `save`, bounded retries
on optimistic-concurrency conflicts, and idempotency keys: a key seen before
returns the first result and stores nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import EventStore, IntegrityError, Mapper, Recording
from eventsourcing.utils import resolve_topic, strtobool

from domain.errors import ConcurrencyConflictError, NotFoundError, ValidationError
from domain.metadata import CommandMeta, command_context, current_meta
from domain.pulse import MemoryPulse, Pulse
from domain.snapshots import PickleTranscoder, SnapshottingRepository, StateSnapshot

log = logging.getLogger("darkroom.studio")

Result = dict[str, Any]
Decision = tuple[Sequence[Aggregate], Result]
A = TypeVar("A", bound=Aggregate)

MAX_ATTEMPTS = 8
CONFLICT_BACKOFF_S = 0.001  # doubled per attempt, jittered: at most ≈ 0.25 s in all


class IdempotentRecorder(Protocol):
    def command_result(self, key: str) -> dict[str, Any] | None: ...
    def head_position(self) -> int: ...


def now() -> datetime:
    return datetime.now(UTC)


def as_uuid(value: object, kind: str = "id") -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise ValidationError(f"{kind} must be a UUID (got {value!r})") from None


class ServiceBase(Application):
    """Shared helpers of the Studio mixins: loading, saving, idempotency.

    Loads are bounded (docs/EVENTSTORE.md, "Bounded command cost"): snapshots every
    `snapshotting_intervals[cls]` events, taken from the saved aggregate, and the
    library's LRU aggregate cache (`AGGREGATE_CACHE_MAXSIZE`), fast-forwarded from the
    log on every get so that another process's writes are seen; a stale decision still
    fails on the version check at save and is retried by `_command`.
    """

    snapshot_class = StateSnapshot
    PULSE_TOPIC = "PULSE_TOPIC"

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        self.pulse = self.construct_pulse()

    def construct_pulse(self) -> Pulse:
        """Where heartbeats go: `PULSE_TOPIC` names a class built with the recorder
        (`darkroom.pulse:PostgresPulse` when wired); one process's memory otherwise."""
        topic = self.env.get(self.PULSE_TOPIC)
        if not topic:
            return MemoryPulse()
        pulse: Pulse = resolve_topic(topic)(self.recorder)
        return pulse

    # -- construction ------------------------------------------------------
    def construct_snapshot_store(self) -> EventStore[UUID]:
        recorder = self.factory.aggregate_recorder(purpose="snapshots")
        return EventStore(mapper=Mapper(transcoder=PickleTranscoder()), recorder=recorder)

    def construct_repository(self) -> Repository[UUID]:
        maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return SnapshottingRepository(
            event_store=self.events, snapshot_store=self.snapshots,
            cache_maxsize=int(maxsize) if maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE,
                                                       "y")))

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """A snapshot of each saved aggregate whose version crossed a multiple of its
        interval, from the object just saved: no reload, one insert, after the commit.
        A failed snapshot is logged, never raised: the command itself has committed."""
        if self.snapshots is None or not self.snapshotting_intervals:
            return
        first: dict[UUID, int] = {}
        for event in processing_event.events:
            first.setdefault(event.originator_id, event.originator_version)
        snapshots = []
        for ident, aggregate in processing_event.aggregates.items():
            interval = self.snapshotting_intervals.get(type(aggregate))
            if not interval or ident not in first:
                continue
            if aggregate.version // interval > (first[ident] - 1) // interval:
                snapshots.append(StateSnapshot.take(aggregate))
        if snapshots:
            try:
                self.snapshots.put(snapshots)
            except Exception:
                log.exception("snapshots of %s not stored (loads replay more until the next)",
                              [str(s.originator_id) for s in snapshots])

    def _record(self, processing_event: Any) -> list[Recording]:
        meta = current_meta().as_dict()
        for domain_event in processing_event.events:
            object.__setattr__(domain_event, "meta", meta)
        return super()._record(processing_event)

    def _load(self, aggregate_id: object, cls: type[A],
              error: Callable[[UUID], NotFoundError]) -> A:
        ident = as_uuid(aggregate_id)
        try:
            aggregate: Aggregate = self.repository.get(ident)
        except AggregateNotFoundError:
            raise error(ident) from None
        if not isinstance(aggregate, cls):
            raise error(ident)
        return aggregate

    def _exists(self, aggregate_id: UUID) -> bool:
        try:
            self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return False
        return True

    @property
    def _store(self) -> IdempotentRecorder:
        return self.recorder  # type: ignore[return-value]

    def head_position(self) -> int:
        return self._store.head_position()

    def _command(self, meta: CommandMeta | None, decide: Callable[[], Decision]) -> Result:
        meta = meta or CommandMeta()
        key = f"{meta.actor}:{meta.idempotency_key}" if meta.idempotency_key else None
        if key and (prior := self._store.command_result(key)) is not None:
            return {**prior, "replayed": True}
        for attempt in range(MAX_ATTEMPTS):
            aggregates, result = decide()
            extra = {"command_key": key, "command_result": result} if key else {}
            try:
                with command_context(meta):
                    recordings = self.save(*aggregates, **extra)
            except IntegrityError:
                if key and (prior := self._store.command_result(key)) is not None:
                    return {**prior, "replayed": True}
                # Callers that lost a race on a hot aggregate spread out before
                # re-deciding, instead of all colliding again on the next version.
                time.sleep(random.uniform(0, CONFLICT_BACKOFF_S * 2 ** attempt))
                continue
            position = recordings[-1].notification.id if recordings else self.head_position()
            return {**result, "position": position}
        raise ConcurrencyConflictError(
            f"gave up after {MAX_ATTEMPTS} attempts: the aggregates kept changing underneath")

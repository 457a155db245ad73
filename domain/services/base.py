"""The service-layer machinery every verb method shares.

A command is `decide()`: load aggregates, call their methods, return the
aggregates to save and a JSON-able result. `_command` runs it with the
command's metadata stamped on every event, one atomic `save`, bounded retries
on optimistic-concurrency conflicts, and idempotency keys: a key seen before
returns the first result and stores nothing.

An idempotency key is bound to its actor (the stored key is `actor:key`), its route
and a hash of its request (`CommandMeta.route`, `.request_hash`), and lives 24 h (the
recorder's `command_ttl_s`). A key sent again with another route or request is refused
(`IdempotencyKeyReusedError`, 422 at the edge) and a key whose first command is still
running in this process is refused too (`IdempotencyKeyInFlightError`, 409). Across
processes a key is not "in flight": the second process's insert loses to the first's
on the commands table's primary key and it answers as a replay (or 422) once the first
has committed. See docs/EVENTSTORE.md, "Idempotency".
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import EventStore, IntegrityError, Recording
from eventsourcing.utils import resolve_topic

from domain.errors import (
    ConcurrencyConflictError,
    DomainError,
    NotFoundError,
    ValidationError,
)
from domain.metadata import CommandMeta, command_context, current_meta
from domain.pulse import MemoryPulse, Pulse
from domain.repository import ReadSet, SnapshottingRepository
from domain.services.hot import HotAggregates
from domain.services.keys import KeysInFlight, bound_to, reused
from domain.services.written import TAG, Written
from domain.snapshot_writer import SnapshotWriter
from domain.snapshots import PickleTranscoder, SnapshotMapper, StateSnapshot

log = logging.getLogger("darkroom.studio")

JsonObject = dict[str, object]  # settings, params, metadata: JSON objects kept as given
Result = dict[str, Any]  # the untyped results of verbs not yet returning a `Written`
# What a verb's `decide()` returns: the aggregates to save and the verb's outcome.
R = TypeVar("R", bound=Written | Result)
Decision = tuple[Sequence[Aggregate], R]
A = TypeVar("A", bound=Aggregate)
UNTYPED = "dict"  # the tag of a stored plain-dict result (domain/services/written.py)

MAX_ATTEMPTS = 8
CONFLICT_BACKOFF_S = 0.001  # doubled per attempt, jittered: at most ≈ 0.25 s in all


# A process prunes expired command rows at most this often (in a background thread).
PRUNE_EVERY_S = 3600.0


class IdempotentRecorder(Protocol):
    def command_record(self, key: str) -> dict[str, Any] | None: ...
    def prune_commands(self, older_than_s: float | None = None) -> int: ...
    def head_position(self) -> int: ...


def _stored(result: Written | Result) -> Result:
    """What an idempotency key stores: a `Written` with its class's tag, a plain dict
    tagged as such (so that a replay gives each caller the type it returned)."""
    if isinstance(result, Written):
        return result.stored()
    return {**result, TAG: UNTYPED}


def now() -> datetime:
    return datetime.now(UTC)


def as_uuid(value: object, kind: str = "id") -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise ValidationError(f"{kind} must be a UUID (got {value!r})") from None


class ServiceBase(Application[UUID]):
    """Shared helpers of the Studio mixins: loading, saving, idempotency.

    Loads are bounded (docs/EVENTSTORE.md, "Bounded command cost"): snapshots every
    `snapshotting_intervals[cls]` events, taken from the saved aggregate, and the
    library's LRU aggregate cache (`AGGREGATE_CACHE_MAXSIZE`), fast-forwarded from the
    log on every get so that another process's writes are seen; a stale decision still
    fails on the version check at save and is retried by `_command`.
    """

    snapshot_class = StateSnapshot
    PULSE_TOPIC = "PULSE_TOPIC"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self.pulse = self.construct_pulse()
        self.keys_in_flight = KeysInFlight()
        self.hot_aggregates = HotAggregates()
        self._pruned_at: float | None = None
        self._prune_lock = threading.Lock()

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
        return EventStore(mapper=SnapshotMapper(transcoder=PickleTranscoder()), recorder=recorder)

    def construct_repository(self) -> Repository[UUID]:
        # Fast-forward and copies are not options here: without fast-forward the cache
        # would never see other processes' writes, and without copies a command that
        # lost its race would leave its uncommitted changes in the cache.
        self.snapshot_writer = SnapshotWriter(self.snapshots) if self.snapshots else None
        maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return SnapshottingRepository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=int(maxsize) if maxsize else None,
            fastforward=True,
            deepcopy_from_cache=True,
            intervals=self.snapshotting_intervals,
            writer=self.snapshot_writer,
        )

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """A snapshot of each saved aggregate whose version crossed a multiple of its
        interval, from the object just saved (no reload), encoded here and inserted by
        `snapshot_writer`'s thread: the command does not wait for that insert (2-4 ms,
        measured). A failed snapshot is logged, never raised: the command has committed."""
        if self.snapshot_writer is None or not self.snapshotting_intervals:
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
                self.snapshot_writer.put(snapshots)
            except Exception:
                log.exception(
                    "snapshots of %s not taken (loads replay more until the next)",
                    [str(s.originator_id) for s in snapshots],
                )

    def flush_snapshots(self, timeout: float = 10.0) -> bool:
        """Wait until every snapshot taken so far is stored (True when done in time)."""
        return self.snapshot_writer.flush(timeout) if self.snapshot_writer else True

    def close(self) -> None:
        if self.snapshot_writer is not None:
            self.snapshot_writer.close()
        super().close()

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        meta = current_meta().as_dict()
        for domain_event in processing_event.events:
            object.__setattr__(domain_event, "meta", meta)
        return super()._record(processing_event)

    def _load(
        self, aggregate_id: object, cls: type[A], error: Callable[[UUID], NotFoundError]
    ) -> A:
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

    def prune_commands(self) -> int:
        """Deletes the expired idempotency keys (older than the recorder's TTL, 24 h)."""
        return self._store.prune_commands()

    def _prune_now_and_then(self) -> None:
        """Expired keys are ignored by lookups and replaced by a reuse; this bounds the
        table: once per `PRUNE_EVERY_S` per process, in a background thread."""
        with self._prune_lock:
            clock = time.monotonic()
            if self._pruned_at is not None and clock - self._pruned_at < PRUNE_EVERY_S:
                return
            self._pruned_at = clock

        def prune() -> None:
            try:
                pruned = self.prune_commands()
            except Exception:
                log.warning("pruning expired idempotency keys failed; next time", exc_info=True)
                return
            if pruned:
                log.info("pruned %d expired idempotency keys", pruned)

        threading.Thread(target=prune, name="darkroom-prune-keys", daemon=True).start()

    def _replay(self, key: str, meta: CommandMeta) -> Written | Result | None:
        """The first result of `key`, if it was stored and has not expired; refused if the
        key was first used for another route or request. A typed result comes back as its
        `Written` class, `replayed`; a plain dict (verbs not typed yet) as a dict."""
        record = self._store.command_record(key)
        if record is None:
            return None
        if not bound_to(record["route"], record["request_hash"], meta):
            raise reused(meta.idempotency_key, record["route"], meta)
        stored = dict(record["result"])
        position = stored.pop("position")
        if stored.get(TAG) == UNTYPED:
            del stored[TAG]
            return {**stored, "position": position, "replayed": True}
        try:
            return Written.rebuild(stored, position=position)
        except (LookupError, ValueError, TypeError):
            # A dict stored before results were typed, of no known shape (or whose values
            # do not parse as the shape its keys match): answered as it was stored.
            return {**stored, "position": position, "replayed": True}

    def _command(self, meta: CommandMeta | None, decide: Callable[[], Decision[R]]) -> R:
        meta = meta or CommandMeta()
        if not meta.idempotency_key:
            return self._attempts(meta, None, decide)
        key = f"{meta.actor}:{meta.idempotency_key}"
        self._prune_now_and_then()
        with self.keys_in_flight.hold(key, meta):
            if (prior := self._replay(key, meta)) is not None:
                return cast(R, prior)  # the type the key stored
            return self._attempts(meta, key, decide)

    @property
    def _checks_reads(self) -> bool:
        """Whether a save can check what its decision read (the group-commit recorder
        can, `command_reads`): then a command's first decision is made on this process's
        cached copies (docs/EVENTSTORE.md, "Decisions on cached copies")."""
        return bool(getattr(self.recorder, "checks_reads", False)) and isinstance(
            self.repository, SnapshottingRepository
        )

    def _attempts(self, meta: CommandMeta, key: str | None, decide: Callable[[], Decision[R]]) -> R:
        """Decide and save, again on a lost race. With a recorder that checks reads, the
        first decision is made on cached copies and the save refuses it if the log holds
        a newer event of anything it read; refused, or failed with a domain error (maybe
        said of a stale copy), it is made again on fresh loads, like a lost race."""
        contested: list[UUID] = []
        checked = self._checks_reads
        # Without a cache there are no copies to decide on: a first, "cached" decision
        # would only be the fresh one made twice whenever it raised a domain error.
        cached = checked and self.repository.cache is not None
        fresh_attempts = 0
        while fresh_attempts < MAX_ATTEMPTS:
            was_cached = cached
            cached = False
            if not was_cached:
                fresh_attempts += 1
            # After a lost race, re-decide holding this process's locks on what we
            # wrote (domain/services/hot.py): our retries queue instead of colliding.
            with self.hot_aggregates.hold(contested):
                try:
                    aggregates, result, reads = self._decided(decide, checked, was_cached)
                except DomainError:
                    if was_cached:
                        continue  # said of a cached copy: fresh loads say it again if it holds
                    raise
                extra: dict[str, Any] = (
                    {
                        "command_key": key,
                        "command_result": _stored(result),
                        "command_route": meta.route,
                        "command_hash": meta.request_hash,
                    }
                    if key
                    else {}
                )
                if reads is not None and (
                    was_cached or key or any(a.pending_events for a in aggregates)
                ):
                    command_reads = reads.to_check(aggregates)
                    if command_reads:
                        extra["command_reads"] = command_reads
                try:
                    with command_context(meta):
                        recordings = self.save(*aggregates, **extra)
                except IntegrityError:
                    recordings = None
            if recordings is None:
                # Another process committed this key first: a replay (or a reuse).
                if key and (prior := self._replay(key, meta)) is not None:
                    return cast(R, prior)  # the type the key stored
                contested = [a.id for a in aggregates]
                if not was_cached:
                    # Callers that lost a race spread out before re-deciding, so that
                    # other processes' retries do not all collide on the next version.
                    time.sleep(random.uniform(0, CONFLICT_BACKOFF_S * 2 ** (fresh_attempts - 1)))
                continue
            position = recordings[-1].notification.id if recordings else self.head_position()
            if isinstance(result, Written):
                return cast(R, replace(result, position=position))
            return cast(R, {**result, "position": position})
        raise ConcurrencyConflictError(
            f"gave up after {MAX_ATTEMPTS} attempts: the aggregates kept changing underneath"
        )

    def _decided(
        self, decide: Callable[[], Decision[R]], checked: bool, cached: bool
    ) -> tuple[Sequence[Aggregate], R, ReadSet | None]:
        """`decide()`, its reads noted (on cached copies if `cached`) when `checked`."""
        if not checked:
            aggregates, result = decide()
            return aggregates, result, None
        repository = cast(SnapshottingRepository, self.repository)
        with repository.deciding(cached) as reads:
            aggregates, result = decide()
        return aggregates, result, reads

"""Snapshots: a cache of aggregate state in PostgreSQL, never a source of truth.

A snapshot is taken from the aggregate the command just saved (no reload) when
its version crosses a multiple of the class's interval. It is stored pickled,
in the library's `snapshots` table, stamped with the class's `class_version`.
Loading takes the newest snapshot at or below the wanted version and replays
the events after it. A snapshot that cannot be used as it is (written by an
older `class_version` with no upcaster, a class that moved, bytes that do not
decode) is ignored: the aggregate is replayed from its events, as it would be
with no snapshot at all. Deleting every snapshot is always safe.

Pickle, not the events' JSON: aggregate state holds what JSON cannot carry
(UUID-keyed dicts, frozen dataclasses, sets, tuples) and decodes 5-10x faster.
A row is trusted no more than an event row: the stored topic must be the snapshot
topic, the aggregate topic inside must be one of the snapshotted kinds, and the
unpickler resolves exact (module, name) pairs only: six stdlib value types and the
frozen value classes aggregate state holds (`VALUE_CLASSES`). Those classes' field
lists are fingerprinted into every snapshot, so a snapshot of an older layout is
ignored rather than loaded with a field missing.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import pickle
import queue
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository, project_aggregate
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import IntegrityError, Mapper, Transcoder
from eventsourcing.utils import get_topic, register_topic, resolve_topic

from domain.catalogue import TaskType
from domain.generation import Variant
from domain.shot import Membership
from domain.workload import OpenTask

log = logging.getLogger("darkroom.snapshots")

SNAPSHOT_TOPIC = "darkroom.snapshot"
# The value classes aggregate state holds (frozen dataclasses): the only domain
# classes a snapshot may name. A new one must be added here (a test checks that
# every snapshotted kind round-trips).
VALUE_CLASSES: tuple[type, ...] = (OpenTask, Membership, Variant, TaskType)
_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("uuid", "UUID"),
        ("decimal", "Decimal"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        *((c.__module__, c.__qualname__) for c in VALUE_CLASSES),
    }
)


def _fingerprint() -> str:
    layout = [(c.__module__, c.__qualname__, [f.name for f in fields(c)]) for c in VALUE_CLASSES]
    return hashlib.sha256(repr(layout).encode()).hexdigest()[:16]


VALUE_LAYOUT = _fingerprint()


class StateSnapshot(Snapshot):
    """The library's snapshot, always stamped with the class version it was taken at."""

    TOPIC = SNAPSHOT_TOPIC

    @classmethod
    def take(cls, aggregate: Any) -> StateSnapshot:
        state = dict(vars(aggregate))
        for private in ("_id", "_version", "_pending_events"):
            state.pop(private, None)
        state["class_version"] = getattr(type(aggregate), "class_version", 1)
        state["value_layout"] = VALUE_LAYOUT
        return cls(  # type: ignore[call-arg]
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=state,
        )


# Stored rows name the class by this fixed topic; a process that only reads
# snapshots must resolve it too (aggregates register theirs the same way, on import).
register_topic(SNAPSHOT_TOPIC, StateSnapshot)


class _DomainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a snapshot may not name {module}.{name}")


class SnapshotMapper(Mapper):
    """The library's mapper, refusing any stored topic but the snapshot's before the
    library resolves (and so imports) it."""

    def to_domain_event(self, stored_event: Any) -> Any:
        if stored_event.topic != SNAPSHOT_TOPIC:
            raise UnusableSnapshotError(
                f"a snapshot row names topic {stored_event.topic!r}, not {SNAPSHOT_TOPIC!r}"
            )
        return super().to_domain_event(stored_event)


class PickleTranscoder(Transcoder):
    """Snapshot state as pickle protocol 5, read back by an allow-listing unpickler."""

    def encode(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=5)

    def decode(self, data: bytes) -> Any:
        return _DomainUnpickler(io.BytesIO(data)).load()


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


class UnusableSnapshotError(Exception):
    """A stored snapshot this code cannot trust as current state (it is then ignored)."""


def usable_state(snapshot: Any, kinds: dict[str, type] | None = None) -> Any:
    """The aggregate the snapshot holds, or UnusableSnapshotError.

    `kinds` maps the snapshotted aggregates' topics to their classes: a snapshot
    naming any other topic is refused before anything is resolved or imported. An
    older `class_version` is upcast by the class's `upcast_vN_vM` methods (the
    library's convention); without them, or with another layout of the value
    classes, the snapshot is unusable.
    """
    cls = (kinds or {}).get(snapshot.topic) if kinds is not None else resolve_topic(snapshot.topic)
    if cls is None:
        raise UnusableSnapshotError(f"{snapshot.topic!r} is not a snapshotted kind")
    layout = snapshot.state.pop("value_layout", None)
    if layout != VALUE_LAYOUT:
        raise UnusableSnapshotError(
            f"value classes had another layout when it was taken ({layout} != {VALUE_LAYOUT})"
        )
    current = getattr(cls, "class_version", 1)
    taken = snapshot.state.get("class_version", 1)
    if taken > current:
        raise UnusableSnapshotError(f"taken by class_version {taken}, code is {current}")
    for version in range(taken, current):
        if not hasattr(cls, f"upcast_v{version}_v{version + 1}"):
            raise UnusableSnapshotError(
                f"taken by class_version {taken}, code is {current}, "
                f"and {cls.__name__} has no upcast_v{version}_v{version + 1}"
            )
    return snapshot.mutate(None)


_ATOMIC: frozenset[type] = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        UUID,
        Decimal,
        datetime,
        date,
        timedelta,
        frozenset,
    }
)


def copy_state(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """A copy of aggregate state that shares immutable values.

    The library deep-copies every aggregate it hands out of its cache, and
    `copy.deepcopy` takes ≈ 4 µs per UUID: a ledger or workload with a thousand
    ids cost milliseconds per load. State here is made of immutable leaves (ids,
    decimals, times, strings) and frozen dataclasses, which are never changed in
    place, held in dicts, lists, sets and tuples: only the containers are copied
    (each once: a container reached twice is copied once, as deepcopy would).
    """
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if memo is None:
        memo = {}
    if kind is dict or kind is list or kind is set or kind is tuple:
        ident = id(value)
        if ident in memo:
            return memo[ident]
        copied: Any
        if kind is dict:
            copied = memo[ident] = {}
            for k, v in value.items():
                copied[k] = copy_state(v, memo)
        elif kind is list:
            copied = memo[ident] = []
            copied.extend(copy_state(v, memo) for v in value)
        elif kind is set:
            copied = memo[ident] = set(value)
        else:
            copied = memo[ident] = tuple(copy_state(v, memo) for v in value)
        return copied
    params = getattr(kind, "__dataclass_params__", None)
    if params is not None and params.frozen:
        return value
    return copy.deepcopy(value)


def copy_aggregate(aggregate: Any) -> Any:
    clone = object.__new__(type(aggregate))
    memo: dict[int, Any] = {}
    clone.__dict__.update({k: copy_state(v, memo) for k, v in vars(aggregate).items()})
    return clone


class SnapshottingRepository(Repository):  # type: ignore[type-arg]
    """The library's repository, with snapshots used only when they are safe, a
    cheaper copy of what it hands out of its cache (`copy_state`), and a snapshot
    queued for any aggregate whose load had to replay a whole interval or more (a
    stream that grew before snapshots existed, or one mostly read)."""

    ignored: ClassVar[int] = 0

    def __init__(
        self,
        *args: Any,
        intervals: dict[type, int] | None = None,
        writer: SnapshotWriter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.intervals = dict(intervals or {})
        self.kinds = {get_topic(cls): cls for cls in self.intervals}
        self.writer = writer

    def get(
        self,
        aggregate_id: Any,
        *,
        version: int | None = None,
        projector_func: Any = project_aggregate,
        fastforward_skipping: bool = False,
        deepcopy_from_cache: bool = True,
    ) -> Any:
        """As the library's `get`, except that the cached object is fast-forwarded AND
        copied under its lock (the library copies after releasing it, so a thread could
        copy a dict another thread is fast-forwarding), and a failed fast-forward
        drops the entry instead of leaving it half-applied."""
        if self.cache is None or version is not None:
            return self._reconstruct_aggregate(aggregate_id, version, projector_func)
        lock = self._use_fastforward_lock(aggregate_id)
        try:
            with lock:
                aggregate = self._cached(aggregate_id, projector_func)
                if deepcopy_from_cache and self.deepcopy_from_cache:
                    return copy_aggregate(aggregate)
                return aggregate
        finally:
            self._disuse_fastforward_lock(aggregate_id)

    def _cached(self, aggregate_id: Any, projector_func: Any) -> Any:
        assert self.cache is not None
        try:
            aggregate = self.cache.get(aggregate_id)
        except KeyError:
            aggregate = self._reconstruct_aggregate(aggregate_id, None, projector_func)
            self.cache.put(aggregate_id, aggregate)
            return aggregate
        if not self.fastforward:
            return aggregate
        try:
            newer = self.event_store.get(originator_id=aggregate_id, gt=aggregate.version)
            aggregate = projector_func(aggregate, newer)
        except BaseException:
            with suppress(KeyError):  # evicted meanwhile: the real error matters
                self.cache.get(aggregate_id, evict=True)
            raise
        if aggregate is None:
            raise AggregateNotFoundError(aggregate_id)
        return aggregate

    def _reconstruct_aggregate(
        self, aggregate_id: Any, version: int | None, projector_func: Any
    ) -> Any:
        start = self._from_snapshot(aggregate_id, version)
        gt = start.version if start is not None else None
        replayed = [0]

        def counted(events: Iterable[Any]) -> Iterable[Any]:
            for event in events:
                replayed[0] += 1
                yield event

        events = counted(self.event_store.get(originator_id=aggregate_id, gt=gt, lte=version))
        aggregate = projector_func(start, events)
        if aggregate is None:
            raise AggregateNotFoundError(
                f"Aggregate {aggregate_id!r} version {version!r} not found."
            )
        interval = self.intervals.get(type(aggregate))
        if version is None and interval and replayed[0] >= interval and self.writer:
            self.writer.put([StateSnapshot.take(aggregate)])
        return aggregate

    def _from_snapshot(self, aggregate_id: UUID, version: int | None) -> Any:
        if self.snapshot_store is None:
            return None
        try:
            found = list(
                self.snapshot_store.get(originator_id=aggregate_id, desc=True, limit=1, lte=version)
            )
            return usable_state(found[0], self.kinds) if found else None
        except Exception as error:  # any bad snapshot means: replay instead
            type(self).ignored += 1
            log.warning("snapshot of %s ignored, replaying its events: %s", aggregate_id, error)
            return None


__all__ = [
    "SNAPSHOT_TOPIC",
    "PickleTranscoder",
    "SnapshotMapper",
    "SnapshotWriter",
    "SnapshottingRepository",
    "StateSnapshot",
    "UnusableSnapshotError",
    "usable_state",
]

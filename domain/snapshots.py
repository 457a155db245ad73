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
The unpickler resolves only the studio's own `domain` classes and a short list
of stdlib value types, so a snapshot row cannot name arbitrary code.
"""

from __future__ import annotations

import copy
import io
import logging
import pickle
import queue
import threading
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import chain
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository, project_aggregate
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Transcoder
from eventsourcing.utils import get_topic, register_topic, resolve_topic

log = logging.getLogger("darkroom.snapshots")

SNAPSHOT_TOPIC = "darkroom.snapshot"
_STDLIB_VALUES = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "list"),
    ("builtins", "dict"), ("builtins", "tuple"),
    ("uuid", "UUID"), ("decimal", "Decimal"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("copyreg", "_reconstructor"),
}


class StateSnapshot(Snapshot):
    """The library's snapshot, always stamped with the class version it was taken at."""

    TOPIC = SNAPSHOT_TOPIC

    @classmethod
    def take(cls, aggregate: Any) -> StateSnapshot:
        state = dict(vars(aggregate))
        for private in ("_id", "_version", "_pending_events"):
            state.pop(private, None)
        state["class_version"] = getattr(type(aggregate), "class_version", 1)
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
        if (module, name) in _STDLIB_VALUES or module == "domain" or module.startswith(
                "domain."):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a snapshot may not name {module}.{name}")


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
    whatever is queued in one call. A full queue drops the snapshot (logged):
    snapshots are a cache, and the next interval takes another.
    """

    def __init__(self, store: Any, capacity: int = 1_000) -> None:
        self.store = store
        self.written = 0
        self._queue: queue.Queue[Any] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, snapshots: list[Any]) -> None:
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
        self.flush(timeout)
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="snapshots",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            batch, taken = list(item), 1
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    self._queue.task_done()
                    break
                batch += more
                taken += 1
            try:
                self._insert(batch)
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    def _insert(self, batch: list[Any]) -> None:
        try:
            self.store.recorder.insert_events(batch)
            self.written += len(batch)
            return
        except Exception:
            if len(batch) == 1:
                log.exception("snapshot of %s v%d not stored (loads replay more until the "
                              "next)", batch[0].originator_id, batch[0].originator_version)
                return
        for one in batch:  # one bad row must not cost the others
            self._insert([one])


class UnusableSnapshotError(Exception):
    """A stored snapshot this code cannot trust as current state (it is then ignored)."""


def usable_state(snapshot: Any) -> Any:
    """The aggregate the snapshot holds, or UnusableSnapshotError.

    An older `class_version` is upcast by the class's `upcast_vN_vM` methods
    (the library's convention); without them the snapshot is unusable.
    """
    cls = resolve_topic(snapshot.topic)
    current = getattr(cls, "class_version", 1)
    taken = snapshot.state.get("class_version", 1)
    if taken > current:
        raise UnusableSnapshotError(f"taken by class_version {taken}, code is {current}")
    for version in range(taken, current):
        if not hasattr(cls, f"upcast_v{version}_v{version + 1}"):
            raise UnusableSnapshotError(
                f"taken by class_version {taken}, code is {current}, "
                f"and {cls.__name__} has no upcast_v{version}_v{version + 1}")
    return snapshot.mutate(None)


_ATOMIC: frozenset[type] = frozenset({
    str, int, float, bool, type(None), bytes, UUID, Decimal, datetime, date, timedelta,
    frozenset,
})


def copy_state(value: Any) -> Any:
    """A copy of aggregate state that shares immutable values.

    The library deep-copies every aggregate it hands out of its cache, and
    `copy.deepcopy` takes ≈ 4 µs per UUID: a ledger or workload with a thousand
    ids cost milliseconds per load. State here is made of immutable leaves (ids,
    decimals, times, strings) and frozen dataclasses, which are never changed in
    place, held in dicts, lists, sets and tuples: only the containers are copied.
    """
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is dict:
        return {k: copy_state(v) for k, v in value.items()}
    if kind is list:
        return [copy_state(v) for v in value]
    if kind is set:
        return set(value)
    if kind is tuple:
        return tuple(copy_state(v) for v in value)
    params = getattr(kind, "__dataclass_params__", None)
    if params is not None and params.frozen:
        return value
    return copy.deepcopy(value)


def copy_aggregate(aggregate: Any) -> Any:
    clone = object.__new__(type(aggregate))
    clone.__dict__.update({k: copy_state(v) for k, v in vars(aggregate).items()})
    return clone


class SnapshottingRepository(Repository):  # type: ignore[type-arg]
    """The library's repository, with snapshots used only when they are safe, and a
    cheaper copy of what it hands out of its cache (`copy_state`)."""

    ignored: ClassVar[int] = 0

    def get(self, aggregate_id: Any, *, version: int | None = None,
            projector_func: Any = project_aggregate, fastforward_skipping: bool = False,
            deepcopy_from_cache: bool = True) -> Any:
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
            self.cache.get(aggregate_id, evict=True)
            raise
        if aggregate is None:
            raise AggregateNotFoundError(aggregate_id)
        return aggregate

    def _reconstruct_aggregate(self, aggregate_id: Any, version: int | None,
                               projector_func: Any) -> Any:
        start = self._from_snapshot(aggregate_id, version)
        gt = start.version if start is not None else None
        events: Iterable[Any] = self.event_store.get(originator_id=aggregate_id, gt=gt,
                                                     lte=version)
        aggregate = projector_func(start, events) if start is not None else projector_func(
            None, chain(events))
        if aggregate is None:
            raise AggregateNotFoundError(
                f"Aggregate {aggregate_id!r} version {version!r} not found.")
        return aggregate

    def _from_snapshot(self, aggregate_id: UUID, version: int | None) -> Any:
        if self.snapshot_store is None:
            return None
        try:
            found = list(self.snapshot_store.get(originator_id=aggregate_id, desc=True,
                                                 limit=1, lte=version))
            return usable_state(found[0]) if found else None
        except Exception as error:  # any bad snapshot means: replay instead
            type(self).ignored += 1
            log.warning("snapshot of %s ignored, replaying its events: %s", aggregate_id, error)
            return None


__all__ = [
    "SNAPSHOT_TOPIC",
    "PickleTranscoder",
    "SnapshotWriter",
    "SnapshottingRepository",
    "StateSnapshot",
    "UnusableSnapshotError",
    "usable_state",
]

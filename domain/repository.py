"""The repository the Studio loads aggregates through: snapshots used only when they are
safe (`domain.snapshots`), and a cheaper copy of what it hands out of its cache."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository, project_aggregate
from eventsourcing.utils import get_topic

from domain.snapshot_writer import SnapshotWriter
from domain.snapshots import StateSnapshot, usable_state

log = logging.getLogger("darkroom.snapshots")

# Ids remembered as having no aggregate (see SnapshottingRepository.known_absent).
ABSENT_KEPT = 1000


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


class ReadSet:
    """What one decision read: each aggregate id with the version it read (0: taken as
    absent), for the save to check (docs/EVENTSTORE.md, "Decisions on cached copies").

    While `cached`, the repository's `get` hands out the cached copy as it is (no
    fast-forward query) and an id remembered as absent as absent; otherwise it loads
    fresh as before. Both ways the read is noted here."""

    __slots__ = ("cached", "versions")

    def __init__(self, cached: bool) -> None:
        self.cached = cached
        self.versions: dict[UUID, int] = {}

    def note(self, aggregate_id: UUID, version: int) -> None:
        known = self.versions.get(aggregate_id)
        if known is None or version < known:  # the oldest copy read is the one to check
            self.versions[aggregate_id] = version

    def go_fresh(self, kept: dict[UUID, int]) -> None:
        """The rest of this decision loads fresh. Only the reads in `kept` stay noted: those
        made before the part given up (`decided_on_cache` drops its discarded batch's
        reads; the caller's own earlier reads are still checked by the save)."""
        self.cached = False
        self.versions = dict(kept)

    def to_check(self, saved: Iterable[Any]) -> list[tuple[UUID, int]]:
        """The reads the save must check: those of aggregates it does not write (the ones
        it writes are checked by their versions' unique constraint), and those of one it
        writes from a newer copy than one it also read (two loads of one id, a `keep` in
        between): that older read is checked as a read. An aggregate handed to the save
        with no new event is only read: nothing inserted checks it, so its read is sent
        (a change the cached copy made a no-op - starring what it says is starred - must
        not answer on a state the log has moved past)."""
        base = {a.id: a.version - len(a.pending_events) for a in saved if a.pending_events}
        return [(i, v) for i, v in self.versions.items() if i not in base or v < base[i]]


_DECIDING: ContextVar[ReadSet | None] = ContextVar("darkroom_deciding", default=None)


def deciding_now() -> ReadSet | None:
    """The read set of the decision running in this context, if any."""
    return _DECIDING.get()


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
        # Ids a checked decision found no aggregate for (the catalogue, until an
        # administrator changes it): `appeared` checks one in one query instead of the
        # two a load costs (snapshot, events). Never trusted unchecked.
        self._absent: dict[UUID, None] = {}
        self._absent_lock = threading.Lock()

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
        drops the entry instead of leaving it half-applied.

        Inside `deciding` the read is noted in the decision's `ReadSet` (a missing id
        with version 0), and while that set is `cached` a cached aggregate comes as it
        is (`peek`) and an id remembered as absent is absent, without a query."""
        reads = _DECIDING.get()
        if reads is not None and version is None:
            return self._read(reads, aggregate_id, projector_func)
        return self._get(aggregate_id, version, projector_func, deepcopy_from_cache)

    def _get(
        self, aggregate_id: Any, version: int | None, projector_func: Any, deepcopy: bool
    ) -> Any:
        if self.cache is None or version is not None:
            return self._reconstruct_aggregate(aggregate_id, version, projector_func)
        lock = self._use_fastforward_lock(aggregate_id)
        try:
            with lock:
                aggregate = self._cached(aggregate_id, projector_func)
                if deepcopy and self.deepcopy_from_cache:
                    return copy_aggregate(aggregate)
                return aggregate
        finally:
            self._disuse_fastforward_lock(aggregate_id)

    @contextmanager
    def deciding(self, cached: bool) -> Iterator[ReadSet]:
        """Notes every `get` of this context's decision in a new `ReadSet` (see `get`)."""
        reads = ReadSet(cached and self.cache is not None)
        token = _DECIDING.set(reads)
        try:
            yield reads
        finally:
            _DECIDING.reset(token)

    def _read(self, reads: ReadSet, aggregate_id: UUID, projector_func: Any) -> Any:
        if reads.cached:
            found = self.peek(aggregate_id)
            if found is not None:
                reads.note(aggregate_id, found.version)
                return found
            if self.known_absent(aggregate_id):
                reads.note(aggregate_id, 0)
                raise AggregateNotFoundError(aggregate_id)
        try:
            found = self._get(aggregate_id, None, projector_func, True)
        except AggregateNotFoundError:
            self.note_absent(aggregate_id)
            reads.note(aggregate_id, 0)
            raise
        if aggregate_id in self._absent:
            self.note_absent(aggregate_id, present=True)
        reads.note(aggregate_id, found.version)
        return found

    def peek(self, aggregate_id: UUID) -> Any | None:
        """A copy of the cached aggregate as it is, not fast-forwarded (None if not cached).
        Only for a decision whose every such read is checked: by the version check of
        the save for what it changes, by `moved_on` for what it only reads."""
        if self.cache is None:
            return None
        lock = self._use_fastforward_lock(aggregate_id)
        try:
            with lock:
                try:
                    return copy_aggregate(self.cache.get(aggregate_id))
                except KeyError:
                    return None
        finally:
            self._disuse_fastforward_lock(aggregate_id)

    def moved_on(self, aggregate: Any) -> bool:
        """Whether the log holds events of `aggregate` after its version (one query)."""
        newer = self.event_store.get(originator_id=aggregate.id, gt=aggregate.version, limit=1)
        return any(True for _ in newer)

    def known_absent(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self._absent

    def note_absent(self, aggregate_id: UUID, present: bool = False) -> None:
        """Remembers that `aggregate_id` had no events (forgets it if `present`)."""
        with self._absent_lock:
            if present:
                self._absent.pop(aggregate_id, None)
                return
            self._absent[aggregate_id] = None
            while len(self._absent) > ABSENT_KEPT:
                del self._absent[next(iter(self._absent))]

    def appeared(self, aggregate_id: UUID) -> bool:
        """Whether the log now holds an event of `aggregate_id` (one query)."""
        found = any(True for _ in self.event_store.get(originator_id=aggregate_id, limit=1))
        if found:
            self.note_absent(aggregate_id, present=True)
        return found

    def keep(self, aggregates: Iterable[Any]) -> None:
        """Caches copies of aggregates just saved, unless the cache holds a newer version:
        the next `peek` of them then needs no query (`get` fast-forwards as before)."""
        if self.cache is None:
            return
        for aggregate in aggregates:
            if aggregate.id in self._absent:
                self.note_absent(aggregate.id, present=True)
            lock = self._use_fastforward_lock(aggregate.id)
            try:
                with lock:
                    try:
                        known = self.cache.get(aggregate.id)
                    except KeyError:
                        known = None
                    if known is None or known.version < aggregate.version:
                        self.cache.put(aggregate.id, copy_aggregate(aggregate))
            finally:
                self._disuse_fastforward_lock(aggregate.id)

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

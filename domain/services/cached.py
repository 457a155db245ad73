"""Decisions on this process's cached aggregates, checked rather than fast-forwarded.

A `Batch` loads each aggregate through the repository, which fast-forwards a cached
one from the log: one query per aggregate, even when nothing changed since this
process saved it (a dispatcher's `Worker`, its owners' `Workload`, the task it just
claimed). A `CachedBatch` takes the cached copy as it is and checks it instead:

- an aggregate the decision changes is checked by the save itself: its first new
  event takes the version after the cached one, and a newer event in the log makes
  the save fail (a conflict, re-decided on fresh loads);
- an aggregate it only reads is checked by `moved_on` before the save: one query
  each, as its fast-forward would have cost, and a newer event means re-deciding on
  fresh loads; an id found absent before (the catalogue, until an administrator
  changes it) is taken for absent and checked the same way (one query, not the two
  of a load).

So a decision never rests on a state the log has moved past; it only skips the
queries that would have found nothing new. `keep` puts what a command saved into the
cache (the library does not when it fast-forwards), so the next command finds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import Repository
from eventsourcing.domain import Aggregate

from domain.errors import DomainError
from domain.repository import deciding_now
from domain.services.base import as_uuid
from domain.services.lifecycle import Batch

R = TypeVar("R")


class CheckingRepository(Protocol):
    def peek(self, aggregate_id: UUID) -> Aggregate | None: ...
    def moved_on(self, aggregate: Aggregate) -> bool: ...
    def keep(self, aggregates: Iterable[Aggregate]) -> None: ...
    def known_absent(self, aggregate_id: UUID) -> bool: ...
    def note_absent(self, aggregate_id: UUID, present: bool = False) -> None: ...
    def appeared(self, aggregate_id: UUID) -> bool: ...


def checks(repository: Repository[UUID]) -> bool:
    """Whether this repository can hand out unchecked cached copies (ours can)."""
    return all(hasattr(repository, name) for name in ("peek", "moved_on", "keep", "appeared"))


class CachedBatch(Batch):
    """A `Batch` that reads cached aggregates without a query; see the module docstring."""

    def __init__(self, repository: Repository[UUID], at: datetime) -> None:
        super().__init__(repository, at)
        self._checking: CheckingRepository = repository  # type: ignore[assignment]
        self._peeked: dict[UUID, Aggregate] = {}
        self._absent: set[UUID] = set()

    def find(self, ident: object) -> Aggregate | None:
        key = as_uuid(ident)
        if key in self._loaded:
            return self._loaded[key]
        cached = self._checking.peek(key)
        if cached is not None:
            self._loaded[key] = cached
            self._peeked[key] = cached
            self._remember(cached)
            return cached
        if self._checking.known_absent(key):  # none last time: checked by moved_on
            self._loaded[key] = None
            self._absent.add(key)
            return None
        found = super().find(key)
        if found is None:
            self._checking.note_absent(key)
        return found

    def moved_on(self) -> bool:
        """Whether an aggregate read from the cache (or taken for absent), and not saved
        by this decision, has newer events in the log (one query each)."""
        saved = {a.id for a in self.changed}
        return any(
            self._checking.moved_on(copy) for k, copy in self._peeked.items() if k not in saved
        ) or any(self._checking.appeared(k) for k in self._absent - saved)


def keep(repository: Repository[UUID], aggregates: Iterable[Aggregate]) -> None:
    """Caches what a command saved (newer than the cache's copy) for the next one."""
    if checks(repository):
        repository.keep(aggregates)  # type: ignore[attr-defined]


def present(repository: Repository[UUID], ids: Iterable[UUID]) -> None:
    """Forgets that saved ids were once found absent (a task created under a key looked
    up first): a later decision here would take it for absent, be refused by the save's
    check and decide again."""
    if checks(repository):
        for ident in ids:
            if repository.known_absent(ident):  # type: ignore[attr-defined]
                repository.note_absent(ident, present=True)  # type: ignore[attr-defined]


def decided_on_cache(
    repository: Repository[UUID], at: datetime, attempt: Callable[[Batch], R | None]
) -> tuple[Batch, R] | None:
    """`attempt` decided on cached copies: the batch and its result, or None when the
    decision must be made again on fresh loads - it raised a domain error (perhaps said
    of a stale copy: fresh loads say it again if it holds), it gave None (given up
    half-way: its changes must not be saved), or a copy it only read has moved on.

    Inside a command whose save checks its reads (`ServiceBase._attempts`), the cached
    copies are those the repository hands out while the decision's `ReadSet` is cached:
    no query here, the save checks them all; None turns the rest of the decision to
    fresh loads (and forgets the reads of the batch it gave up; the caller's earlier
    reads stay checked). In a fresh decision
    it is None at once. Elsewhere, a `CachedBatch` checked by `moved_on` queries."""
    reads = deciding_now()
    if reads is not None:
        if not reads.cached:
            return None
        batch, before = Batch(repository, at), dict(reads.versions)
        try:
            result = attempt(batch)
        except DomainError:
            result = None
        if result is None:
            reads.go_fresh(before)
            return None
        return batch, result
    if not checks(repository):
        return None
    batch = CachedBatch(repository, at)
    try:
        result = attempt(batch)
    except DomainError:
        return None
    if result is None or batch.moved_on():
        return None
    return batch, result

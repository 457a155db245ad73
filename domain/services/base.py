"""The service-layer machinery every verb method shares.

A command is `decide()`: load aggregates, call their methods, return the
aggregates to save and a JSON-able result. `_command` runs it with the
command's metadata stamped on every event, one atomic `save`, bounded retries
on optimistic-concurrency conflicts, and idempotency keys: a key seen before
returns the first result and stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording

from domain.errors import ConcurrencyConflictError, NotFoundError, ValidationError
from domain.metadata import CommandMeta, command_context, current_meta

Result = dict[str, Any]
Decision = tuple[Sequence[Aggregate], Result]
A = TypeVar("A", bound=Aggregate)

MAX_ATTEMPTS = 8


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
    """Shared helpers of the Studio mixins: loading, saving, idempotency."""

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
        for _ in range(MAX_ATTEMPTS):
            aggregates, result = decide()
            extra = {"command_key": key, "command_result": result} if key else {}
            try:
                with command_context(meta):
                    recordings = self.save(*aggregates, **extra)
            except IntegrityError:
                if key and (prior := self._store.command_result(key)) is not None:
                    return {**prior, "replayed": True}
                continue
            position = recordings[-1].notification.id if recordings else self.head_position()
            return {**result, "position": position}
        raise ConcurrencyConflictError(
            f"gave up after {MAX_ATTEMPTS} attempts: the aggregates kept changing underneath")

"""Audit and time travel: any aggregate as of a version or a moment, a project as of a position."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from domain.errors import NotFoundError, ValidationError
from domain.services.base import ServiceBase, as_uuid
from domain.snapshots import usable_state

PAGE = 1000


class HistoryServices(ServiceBase):
    def aggregate_at(
        self, aggregate_id: UUID | str, *, version: int | None = None, at: datetime | None = None
    ) -> Aggregate:
        """The aggregate as it was after `version`, or at moment `at` (UTC)."""
        ident = as_uuid(aggregate_id, "aggregate id")
        if version is not None and version < 1:
            raise ValidationError(f"version starts at 1 (got {version})")
        if at is not None:
            version = self._version_at(ident, at)
        try:
            return self.repository.get(ident, version=version)
        except AggregateNotFoundError:
            raise NotFoundError("aggregate", ident) from None

    def _version_at(self, ident: UUID, at: datetime) -> int:
        versions = [e.originator_version for e in self.events.get(ident) if e.timestamp <= at]  # type: ignore[attr-defined]
        if not versions:
            raise NotFoundError("aggregate", f"{ident} at {at.isoformat()}")
        return max(versions)

    def history(
        self, aggregate_id: UUID | str, *, after_version: int = 0, limit: int | None = None
    ) -> list[dict[str, object]]:
        """The events of one aggregate after `after_version` (at most `limit`; None: all)
        with their position, time and metadata."""
        ident = as_uuid(aggregate_id, "aggregate id")
        rows = self.recorder.select_history(ident, after_version, limit)  # type: ignore[attr-defined]
        if not rows and not after_version:
            raise NotFoundError("aggregate", ident)
        out = []
        for row in rows:
            event: Any = self.mapper.to_domain_event(_stored(ident, row))
            meta = getattr(event, "meta", {}) or {}
            out.append(
                {
                    "position": row["notification_id"],
                    "version": row["originator_version"],
                    "topic": row["topic"],
                    "timestamp": event.timestamp.isoformat(),
                    **meta,
                }
            )
        return out

    def stored_snapshots(self, aggregate_id: UUID | str) -> list[dict[str, object]]:
        """The stored snapshots of one aggregate: caches of its state, not events.

        `usable` says whether a load would start from it (see `domain.snapshots`)."""
        ident = as_uuid(aggregate_id, "aggregate id")
        if self.snapshots is None:
            return []
        out = []
        for stored in self.snapshots.recorder.select_events(ident):
            row: dict[str, object] = {
                "kind": "snapshot",
                "version": stored.originator_version,
                "bytes": len(stored.state),
            }
            try:
                snapshot: Any = self.snapshots.mapper.to_domain_event(stored)
                row["timestamp"] = snapshot.timestamp.isoformat()
                usable_state(snapshot, self.repository.kinds)  # type: ignore[attr-defined]
                row["usable"] = True
            except Exception as error:  # reported, not raised: an audit reads everything
                row["usable"] = False
                row["why"] = str(error)
            out.append(row)
        return out

    def fold_until(
        self, position: int, keep: Callable[[Aggregate], bool] | None = None
    ) -> dict[UUID, Aggregate]:
        """Every aggregate as of global position `position` (optionally only those `keep` wants)."""
        states: dict[UUID, Any] = {}
        start = 0
        while start < position:
            page = self.recorder.select_notifications(
                start, PAGE, stop=position, inclusive_of_start=False
            )
            if not page:
                break
            for notification in page:
                event: Any = self.mapper.to_domain_event(notification)
                states[event.originator_id] = event.mutate(states.get(event.originator_id))
            start = page[-1].id
        return {k: v for k, v in states.items() if keep is None or keep(v)}

    def project_as_of(self, project_id: UUID | str, position: int) -> dict[UUID, Aggregate]:
        """A project's whole state (itself, shots, generations, tasks) as of a past position."""
        ident = as_uuid(project_id, "project id")
        found = self.fold_until(
            position, keep=lambda a: a.id == ident or getattr(a, "project_id", None) == ident
        )
        if ident not in found:
            raise NotFoundError("project", f"{ident} at position {position}")
        return found


def _stored(ident: UUID, row: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=ident,
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )

"""A task's statuses, the moves between them, and the clock rules of its timestamps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from domain.errors import ValidationError

QUEUED = "Queued"
IN_PROGRESS = "In Progress"
COMPLETE = "Complete"
FAILED = "Failed"
CANCELLED = "Cancelled"
STATUSES = (QUEUED, IN_PROGRESS, COMPLETE, FAILED, CANCELLED)
TERMINAL = frozenset({COMPLETE, FAILED, CANCELLED})

TRANSITIONS: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({IN_PROGRESS, FAILED, CANCELLED}),
    IN_PROGRESS: frozenset({COMPLETE, FAILED, CANCELLED, QUEUED}),
    COMPLETE: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

MAX_ATTEMPTS = 3


def require_utc(at: object, what: str = "at") -> datetime:
    """Timestamps enter the domain as timezone-aware datetimes."""
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError(f"{what} must be a timezone-aware datetime (got {at!r})")
    return at


def billable_seconds(started_at: datetime, processed_at: datetime) -> int:
    """ceil(processed - started) in whole seconds, at least 1."""
    elapsed = processed_at - started_at
    whole, rest = divmod(elapsed, timedelta(seconds=1))
    return max(1, whole + (1 if rest else 0))

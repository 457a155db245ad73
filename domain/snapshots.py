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

import hashlib
import io
import logging
import pickle
from dataclasses import fields
from typing import Any
from uuid import UUID

from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Mapper, Transcoder
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
        return cls(
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


class SnapshotMapper(Mapper[UUID]):
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


__all__ = [
    "SNAPSHOT_TOPIC",
    "PickleTranscoder",
    "SnapshotMapper",
    "StateSnapshot",
    "UnusableSnapshotError",
    "usable_state",
]

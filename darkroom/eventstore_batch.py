"""A group commit's requests (darkroom/eventstore.py): one caller's `insert_events` call
waiting for a leader, the keys batchmates share, and the errors a request can cause by
itself.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    NotSupportedError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)

# Tags a command key among the (originator_id, version) pairs of `Request.keys`.
COMMAND = object()

# Errors one request can cause by itself (a conflict, a bad value). In a batch
# they are isolated to that request; anything else (connection lost, lock
# timeout) fails the whole batch, and the callers' retry policy takes over.
REQUEST_ERRORS = (
    IntegrityError,
    DataError,
    ProgrammingError,
    NotSupportedError,
    TypeError,
    ValueError,
)
PSYCOPG_REQUEST_ERRORS = (
    psycopg.IntegrityError,
    psycopg.DataError,
    psycopg.ProgrammingError,
    psycopg.NotSupportedError,
)
TRANSLATIONS: dict[type[psycopg.Error], type[PersistenceError]] = {
    psycopg.IntegrityError: IntegrityError,
    psycopg.DataError: DataError,
    psycopg.ProgrammingError: ProgrammingError,
    psycopg.NotSupportedError: NotSupportedError,
}


class Request:
    """One caller's `insert_events` call, waiting for a leader to commit it."""

    __slots__ = (
        "command_hash",
        "command_json",
        "command_key",
        "command_route",
        "done",
        "error",
        "error_is_shared",
        "events",
        "keys",
        "kwargs",
        "notification_ids",
        "originator_ids",
        "promoted",
        "read_ids",
        "read_versions",
        "reads",
        "states",
        "topics",
        "versions",
        "wake",
        "writes",
    )

    def __init__(self, events: Sequence[StoredEvent], kwargs: dict[str, Any]) -> None:
        self.events = events
        self.kwargs = kwargs
        # Columns are built here, in the caller's thread, while the leader is
        # busy with the previous batch: it keeps Python work off the critical path.
        self.originator_ids = [e.originator_id for e in events]
        self.versions = [e.originator_version for e in events]
        self.topics = [e.topic for e in events]
        self.states = [e.state for e in events]
        self.command_key: str | None = kwargs.get("command_key")
        # What the key is bound to (NULL: unknown, matches any request).
        self.command_route: str | None = kwargs.get("command_route")
        self.command_hash: str | None = kwargs.get("command_hash")
        # Serialised here too, so a result that is not JSON fails this caller
        # alone and never reaches the shared transaction.
        self.command_json: str | None = None
        if self.command_key is not None:
            result = kwargs.get("command_result") or {}
            if not isinstance(result, dict):
                msg = f"command_result must be a dict, not {type(result).__name__}"
                raise TypeError(msg)
            self.command_json = json.dumps(result)
        # Everything this call must be the first to write: its (originator_id,
        # version) pairs and its command key. The leader finds batchmates that
        # share one by set operations on these.
        self.keys: set[Any] = set(zip(self.originator_ids, self.versions, strict=True))
        if len(self.keys) != len(events):
            msg = "Two of the events have the same originator_id and originator_version"
            raise IntegrityError(msg)
        if self.command_key is not None:
            self.keys.add((COMMAND, self.command_key))
        # What the decision read and did not write, with the versions it read
        # (`command_reads`): the append function refuses the request if any moved on.
        reads = kwargs.get("command_reads") or ()
        self.read_ids = [ident for ident, _ in reads]
        self.read_versions = [version for _, version in reads]
        self.reads: set[Any] = set(self.read_ids)
        self.writes: set[Any] = set(self.originator_ids)
        self.notification_ids: list[int] = []
        self.error: BaseException | None = None
        self.error_is_shared = False
        self.done = False
        self.promoted = False
        # A plain lock held from birth: releasing it wakes the waiting caller.
        # Cheaper than an Event, and wakes exactly one thread.
        self.wake = threading.Lock()
        self.wake.acquire()

    def succeed(self, notification_ids: list[int]) -> None:
        self.notification_ids = notification_ids
        self._finish()

    def fail(self, error: BaseException, *, shared: bool) -> None:
        self.error = error
        self.error_is_shared = shared
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self.wake.release()

    def result(self) -> list[int]:
        """The caller's notification ids, or its error raised in the caller's thread."""
        if self.error is None:
            return self.notification_ids
        if not self.error_is_shared:
            raise self.error
        # Many threads raising one exception object would race on its
        # __traceback__; each gets a copy chained to the original.
        try:
            clone = copy.copy(self.error)
        except Exception:  # pragma: no cover - exotic exception types
            raise self.error from None
        raise clone from self.error


def shared_keys(batch: Sequence[Request]) -> tuple[list[int], list[int]]:
    """Keys that more than one request of `batch` wants to write, as two columns.

    Returns (request number, key number) pairs grouped by request in arrival
    order (numbers are 1-based), or two empty lists when requests are disjoint,
    the usual case, found with one set operation per request.
    """
    seen: set[Any] = set()
    shared: set[Any] = set()
    for request in batch:
        if not seen.isdisjoint(request.keys):
            shared |= seen & request.keys
        seen |= request.keys
    if not shared:
        return [], []
    numbers: dict[Any, int] = {}
    requests: list[int] = []
    keys: list[int] = []
    for number, request in enumerate(batch, 1):
        for key in request.keys & shared:
            requests.append(number)
            keys.append(numbers.setdefault(key, len(numbers) + 1))
    return requests, keys


def conflict() -> IntegrityError:
    return IntegrityError(
        "Conflict: an event's (originator_id, originator_version) or the command key is "
        "already recorded, or was written first by an earlier call in the same batch"
    )


def split(ids: list[int | None], sizes: list[int]) -> list[list[int | None]]:
    parts: list[list[int | None]] = []
    start = 0
    for size in sizes:
        parts.append(ids[start : start + size])
        start += size
    return parts


def translated(error: psycopg.Error) -> PersistenceError:
    """The eventsourcing error PostgresDatastore.get_connection() would raise."""
    for psycopg_type, translated_type in TRANSLATIONS.items():
        if isinstance(error, psycopg_type):
            translated = translated_type(str(error))
            translated.__cause__ = error
            return translated
    raise AssertionError(error)  # pragma: no cover - only isolatable errors get here


def identity(text: str) -> str:
    return text

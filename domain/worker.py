"""A worker's liveness and the tasks it holds, so a lost worker's tasks are found
without a query. Heartbeats are not events (`domain/pulse.py`): the log records a
worker's registration, the tasks it takes and releases, its return after being lost,
and `Lost` with the last-seen time the sweep decided on.

A worker id belongs to the credential that registered it (`owner`: "service" for the
service key, "user:<id>" for a user's token, "system" for in-process callers); another
credential is told it does not exist. Workers registered before owners were recorded
have `owner=None`: the first credential that uses one claims it."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import ValidationError, WorkerNotFoundError
from domain.task import require_utc

WORKER_NAMESPACE = uuid5(NAMESPACE_URL, "https://darkroom.studio/worker")
# Silence after which a heartbeat is stored as an event (see `Worker.heartbeat`):
# beats every 10-20 s never reach it, a sweep's timeout (2 min) is well past it.
QUIET_GAP = timedelta(seconds=30)
# Workers heartbeat every 20 s: six missed beats and it is lost.
LOST_AFTER = timedelta(seconds=120)
# The seed's sweeper failed a task that ran this long even on a live worker.
STUCK_AFTER = timedelta(hours=24)
# A task a worker took this long ago and leaves out of a heartbeat that lists every task
# it holds goes back to the queue (`Worker.unlisted`): the claim's reply never reached it.
# Far longer than a claim's reply takes to cross a heartbeat on its way.
UNLISTED_AFTER = timedelta(seconds=60)
# The owner of workers registered by in-process callers (the Ray dispatcher, tests).
SYSTEM_OWNER = "system"


class Worker(Aggregate):
    TOPIC = "darkroom.worker"
    class_version = 2

    class Created(Aggregate.Created):
        TOPIC = "darkroom.worker.created"
        class_version = 2
        worker_id: str
        at: datetime
        owner: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            """Version 1 recorded no owner: unclaimed, the first credential claims it."""
            state["owner"] = None

    class Claimed(Aggregate.Event):
        """An unclaimed worker (registered before owners were recorded) gets its owner."""

        TOPIC = "darkroom.worker.claimed"
        owner: str

    class Seen(Aggregate.Event):
        """A lost worker is back (before heartbeats moved out of the log: any heartbeat)."""

        TOPIC = "darkroom.worker.seen"
        at: datetime

    class TaskTaken(Aggregate.Event):
        TOPIC = "darkroom.worker.task_taken"
        task_id: UUID
        at: datetime

    class TaskReleased(Aggregate.Event):
        TOPIC = "darkroom.worker.task_released"
        task_id: UUID

    class Lost(Aggregate.Event):
        TOPIC = "darkroom.worker.lost"
        class_version = 2
        at: datetime
        last_seen: datetime | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            """Version 1 did not say when the worker was last seen (its `Seen` events did)."""
            state["last_seen"] = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, object]) -> None:
        """Snapshots taken before owners were recorded: unclaimed."""
        state.setdefault("owner", None)

    @staticmethod
    def create_id(worker_id: str, at: datetime) -> UUID:
        return Worker.id_for(worker_id)

    @staticmethod
    def id_for(worker_id: str) -> UUID:
        return uuid5(WORKER_NAMESPACE, worker_id)

    @event(Created)
    def __init__(self, worker_id: str, at: datetime, owner: str | None) -> None:
        self.worker_id = worker_id
        self.owner = owner
        self.last_seen = at
        self.running: dict[UUID, datetime] = {}
        self.lost = False

    @classmethod
    def register(cls, worker_id: str, at: datetime, owner: str | None = SYSTEM_OWNER) -> Worker:
        if not isinstance(worker_id, str) or not worker_id.strip():
            raise ValidationError(f"a worker needs an id (got {worker_id!r})")
        return cls(worker_id=worker_id, at=require_utc(at), owner=owner)

    # -- queries -------------------------------------------------------------
    def belongs_to(self, credential: str | None) -> bool:
        """Whether a caller with `credential` may act as this worker: its owner; anyone
        while it is unclaimed; in-process callers (None) always."""
        return credential is None or self.owner is None or self.owner == credential

    def require_owner(self, credential: str | None) -> None:
        """Another credential's worker is, to that caller, a worker that does not exist."""
        if not self.belongs_to(credential):
            raise WorkerNotFoundError(self.worker_id)

    def seen_at(self, pulse: datetime | None) -> datetime:
        """The latest sign of life: the log's (registration, a task taken) or the pulse's."""
        return self.last_seen if pulse is None else max(self.last_seen, pulse)

    def is_lost(
        self, now: datetime, timeout: timedelta = LOST_AFTER, pulse: datetime | None = None
    ) -> bool:
        return now - self.seen_at(pulse) > timeout

    def stuck(self, now: datetime, after: timedelta = STUCK_AFTER) -> list[UUID]:
        return [t for t, since in self.running.items() if now - since > after]

    def not_holding(self, task_ids: list[UUID]) -> list[UUID]:
        """Of the tasks a worker says it runs, those it no longer holds (stop them)."""
        return [t for t in task_ids if t not in self.running]

    def unlisted(
        self, listed: list[UUID], now: datetime, after: timedelta = UNLISTED_AFTER
    ) -> list[UUID]:
        """Tasks this worker holds that `listed` (every task it says it holds) leaves
        out, taken at least `after` before `now`: a claim whose reply it never got. A
        task taken more recently may be a claim whose reply is still on its way."""
        return [t for t, since in self.running.items() if t not in listed and now - since >= after]

    # -- decisions -----------------------------------------------------------
    def claim(self, credential: str) -> None:
        """An unclaimed worker becomes `credential`'s; an owned one must be its already."""
        self.require_owner(credential)
        if self.owner is None:
            self._claimed(owner=credential)

    def heartbeat(self, at: datetime, pulse: datetime | None = None) -> None:
        """A heartbeat is an event only when the worker was lost (it is back) or silent
        for `QUIET_GAP` or more: that heartbeat may race a sweep deciding the worker is
        lost, and as an event it makes one of the two saves conflict and re-decide,
        instead of both being acknowledged. The pulse takes every other one."""
        require_utc(at)
        if self.lost or at - self.seen_at(pulse) >= QUIET_GAP:
            self._seen(at=at)

    def take(self, task_id: UUID, at: datetime) -> None:
        self._task_taken(task_id=task_id, at=require_utc(at))

    def release(self, task_id: UUID) -> None:
        if task_id in self.running:
            self._task_released(task_id=task_id)

    def mark_lost(self, at: datetime, pulse: datetime | None = None) -> None:
        if not self.lost:
            self._lost(at=require_utc(at), last_seen=self.seen_at(pulse))

    # -- state ---------------------------------------------------------------
    @event(Claimed)
    def _claimed(self, owner: str) -> None:
        self.owner = owner

    @event(Seen)
    def _seen(self, at: datetime) -> None:
        self.last_seen = at
        self.lost = False

    @event(TaskTaken)
    def _task_taken(self, task_id: UUID, at: datetime) -> None:
        self.running[task_id] = at
        self.last_seen = max(self.last_seen, at)
        self.lost = False

    @event(TaskReleased)
    def _task_released(self, task_id: UUID) -> None:
        del self.running[task_id]

    @event(Lost)
    def _lost(self, at: datetime, last_seen: datetime | None) -> None:
        self.lost = True
        self.running = {}
        if last_seen is not None:
            self.last_seen = last_seen

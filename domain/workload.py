"""An owner's open tasks (Queued or In Progress): the per-owner limit, enforced exactly.

Every claim saves the owner's `Workload` together with the task, so two workers
claiming two tasks of one owner at once conflict on it and one of them re-decides:
the limit of tasks In Progress holds under any concurrency. It also answers
"which tasks of this project are still pending" without a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.claiming import MAX_IN_PROGRESS_PER_OWNER
from domain.errors import TaskNotClaimableError, ValidationError
from domain.task import IN_PROGRESS, QUEUED

if TYPE_CHECKING:
    from domain.task import Task

WORKLOAD_NAMESPACE = uuid5(NAMESPACE_URL, "https://darkroom.studio/workload")


@dataclass(frozen=True)
class OpenTask:
    project_id: UUID
    status: str
    is_orchestrator: bool

    def __deepcopy__(self, memo: dict[int, object]) -> OpenTask:
        # Frozen and made of immutable values: the repository's copy of a cached
        # aggregate may share it (copying each one made every read grow with history).
        return self


class Workload(Aggregate):
    TOPIC = "darkroom.workload"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.workload.created"
        owner_id: str

    class Tracked(Aggregate.Event):
        TOPIC = "darkroom.workload.tracked"
        task_id: UUID
        project_id: UUID
        status: str
        is_orchestrator: bool

    class Closed(Aggregate.Event):
        TOPIC = "darkroom.workload.closed"
        task_id: UUID

    @staticmethod
    def create_id(owner_id: str) -> UUID:
        return uuid5(WORKLOAD_NAMESPACE, owner_id)

    @classmethod
    def id_for(cls, owner_id: str) -> UUID:
        return cls.create_id(owner_id)

    @event(Created)
    def __init__(self, owner_id: str) -> None:
        self.owner_id = owner_id
        self.open: dict[UUID, OpenTask] = {}

    @classmethod
    def start(cls, owner_id: str) -> Workload:
        if not isinstance(owner_id, str) or not owner_id.strip():
            raise ValidationError(f"a workload needs an owner id (got {owner_id!r})")
        return cls(owner_id=owner_id)

    # -- queries -------------------------------------------------------------
    @property
    def running(self) -> int:
        """Tasks In Progress, orchestrators not counted (they wait, they don't run)."""
        return sum(
            1 for t in self.open.values() if t.status == IN_PROGRESS and not t.is_orchestrator
        )

    @property
    def has_room(self) -> bool:
        return self.running < MAX_IN_PROGRESS_PER_OWNER

    def queued_in(self, project_id: UUID) -> list[UUID]:
        return [
            i for i, t in self.open.items() if t.project_id == project_id and t.status == QUEUED
        ]

    # -- decisions -----------------------------------------------------------
    def track(self, task: Task) -> None:
        """Follows a task's status: open while Queued or In Progress, closed after."""
        if task.owner_id != self.owner_id:
            raise ValidationError(
                f"task {task.id} belongs to {task.owner_id!r}, not to {self.owner_id!r}"
            )
        if task.status not in (QUEUED, IN_PROGRESS):
            if task.id in self.open:
                self._closed(task_id=task.id)
            return
        known = self.open.get(task.id)
        if known is not None and known.status == task.status:
            return
        if task.status == IN_PROGRESS and not task.is_orchestrator and not self.has_room:
            raise TaskNotClaimableError(
                f"owner {self.owner_id} already runs {self.running} tasks "
                f"(max {MAX_IN_PROGRESS_PER_OWNER})"
            )
        self._tracked(
            task_id=task.id,
            project_id=task.project_id,
            status=task.status,
            is_orchestrator=task.is_orchestrator,
        )

    # -- state ---------------------------------------------------------------
    @event(Tracked)
    def _tracked(self, task_id: UUID, project_id: UUID, status: str, is_orchestrator: bool) -> None:
        self.open[task_id] = OpenTask(project_id, status, is_orchestrator)

    @event(Closed)
    def _closed(self, task_id: UUID) -> None:
        del self.open[task_id]

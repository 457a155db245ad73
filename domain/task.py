"""The Task aggregate: one unit of work, its status machine, attempts and result."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Unpack
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import taskrules as rules
from domain.catalogue import ORCHESTRATION
from domain.errors import InvalidTransitionError, TaskNotInProgressError, ValidationError
from domain.tasklinks import Links, model_name_of
from domain.taskrules import NewTask
from domain.taskstatus import (
    CANCELLED,
    COMPLETE,
    FAILED,
    IN_PROGRESS,
    MAX_ATTEMPTS,
    QUEUED,
    STATUSES,
    TERMINAL,
    TRANSITIONS,
    billable_seconds,
    require_utc,
)

# The status rules and params links are re-exported: read as the task's.
__all__ = ["Links", "Task", "billable_seconds", "model_name_of", "require_utc"]
__all__ += ["CANCELLED", "COMPLETE", "FAILED", "IN_PROGRESS", "MAX_ATTEMPTS", "QUEUED"]
__all__ += ["STATUSES", "TERMINAL", "TRANSITIONS"]


class Task(Aggregate):
    TOPIC = "darkroom.task"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.task.created"
        class_version = 2
        project_id: UUID
        owner_id: str
        task_type: str
        run_type: str
        category: str
        model_name: str | None
        params: dict[str, Any]
        dependant_on: list[UUID]
        idempotency_key: str | None
        created_at: datetime
        orchestrator_task_id: UUID | None
        run_id: str | None
        segment_index: int | None
        join_index: int | None
        child_order: int | None
        parent_generation_id: UUID | None
        shot_id: UUID | None
        based_on: UUID | None
        request_hash: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 did not bind its idempotency key to the request that made it."""
            state["request_hash"] = None

    class Claimed(Aggregate.Event):
        TOPIC = "darkroom.task.claimed"
        worker_id: str
        at: datetime

    class StartReset(Aggregate.Event):
        """The worker finished loading its model: billing time starts here."""

        TOPIC = "darkroom.task.start_reset"
        at: datetime

    class ProgressReported(Aggregate.Event):
        TOPIC = "darkroom.task.progress_reported"
        step: int
        total: int

    class Completed(Aggregate.Event):
        TOPIC = "darkroom.task.completed"
        output_location: str | None
        thumbnail_url: str | None
        result_data: dict[str, Any]
        at: datetime

    class Failed(Aggregate.Event):
        TOPIC = "darkroom.task.failed"
        error: str
        attempts: int
        at: datetime

    class Cancelled(Aggregate.Event):
        TOPIC = "darkroom.task.cancelled"
        reason: str | None
        at: datetime

    class Requeued(Aggregate.Event):
        TOPIC = "darkroom.task.requeued"
        reason: str
        attempts: int
        at: datetime

    class Released(Aggregate.Event):
        """Its worker handed it back unfinished (a graceful shutdown): no attempt spent."""

        TOPIC = "darkroom.task.released"
        reason: str
        at: datetime

    class CostRecorded(Aggregate.Event):
        TOPIC = "darkroom.task.cost_recorded"
        cost: Decimal

    class ChildrenSpawned(Aggregate.Event):
        """An orchestrator's children, so its family is found without a query."""

        TOPIC = "darkroom.task.children_spawned"
        task_ids: list[UUID]

    class DependantAdded(Aggregate.Event):
        """A task waits for this one: a failure here fails it in the same save."""

        TOPIC = "darkroom.task.dependant_added"
        task_id: UUID

    @event(Created)
    def __init__(
        self,
        project_id: UUID,
        owner_id: str,
        task_type: str,
        run_type: str,
        category: str,
        model_name: str | None,
        params: dict[str, Any],
        dependant_on: list[UUID],
        idempotency_key: str | None,
        created_at: datetime,
        orchestrator_task_id: UUID | None,
        run_id: str | None,
        segment_index: int | None,
        join_index: int | None,
        child_order: int | None,
        parent_generation_id: UUID | None,
        shot_id: UUID | None,
        based_on: UUID | None,
        request_hash: str | None,
        id: UUID | None = None,
    ) -> None:
        self.project_id = project_id
        self.owner_id = owner_id
        self.task_type = task_type
        self.run_type = run_type
        self.category = category
        self.model_name = model_name
        self.params = params
        self.dependant_on = list(dependant_on)
        self.idempotency_key = idempotency_key
        # What the key was first sent with (sha256 of the request; None: unknown).
        self.request_hash = request_hash
        self.created_at = created_at
        self.orchestrator_task_id = orchestrator_task_id
        self.run_id = run_id
        self.segment_index = segment_index
        self.join_index = join_index
        self.child_order = child_order
        self.parent_generation_id = parent_generation_id
        self.shot_id = shot_id
        self.based_on = based_on
        self.status = QUEUED
        self.attempts = 0
        self.worker_id: str | None = None
        self.started_at: datetime | None = None
        self.processed_at: datetime | None = None
        self.output_location: str | None = None
        self.thumbnail_url: str | None = None
        self.result_data: dict[str, Any] = {}
        self.error_message: str | None = None
        self.progress: tuple[int, int] | None = None
        self.cost: Decimal | None = None
        self.child_task_ids: list[UUID] = []
        self.dependants: list[UUID] = []

    @classmethod
    def create(cls, **request: Unpack[NewTask]) -> Task:
        """A Queued task of an (already resolved, active) catalogue type (`NewTask`)."""
        return cls(**rules.created_fields(request))

    # -- queries -------------------------------------------------------------
    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_orchestrator(self) -> bool:
        return self.category == ORCHESTRATION

    @property
    def allowed_transitions(self) -> frozenset[str]:
        return TRANSITIONS[self.status]

    @property
    def links(self) -> Links:
        return Links.held_by(self)

    def billable_seconds(self) -> int | None:
        """Whole seconds from (reset) start to completion, at least 1; None if not both."""
        if self.started_at is None or self.processed_at is None:
            return None
        return billable_seconds(self.started_at, self.processed_at)

    # -- decisions -----------------------------------------------------------
    def claim(self, worker_id: str, at: datetime) -> None:
        rules.require_worker(worker_id)
        self._check(IN_PROGRESS)
        self._claimed(worker_id=worker_id, at=require_utc(at))

    def reset_start(self, at: datetime) -> None:
        """Model loading is not billed: the worker restarts the clock once it is ready."""
        self._running("reset the start time of")
        self._start_reset(at=require_utc(at))

    def report_progress(self, step: int, total: int) -> None:
        self._running("report progress on")
        rules.require_progress(step, total)
        self._progress_reported(step=step, total=total)

    def complete(
        self,
        output_location: str | None,
        at: datetime,
        *,
        thumbnail_url: str | None = None,
        result_data: Mapping[str, Any] | None = None,
    ) -> None:
        self._check(COMPLETE)
        data = rules.require_outputs(output_location, thumbnail_url, result_data)
        self._completed(
            output_location=output_location,
            thumbnail_url=thumbnail_url,
            result_data=data,
            at=require_utc(at),
        )

    def fail(self, error: str, at: datetime) -> None:
        self._check(FAILED)
        self._failed(error=rules.failure_message(error), attempts=self.attempts, at=require_utc(at))

    def cancel(self, at: datetime, reason: str | None = None) -> None:
        self._check(CANCELLED)
        self._cancelled(reason=reason, at=require_utc(at))

    def requeue(self, reason: str | None, at: datetime) -> None:
        """Back to the queue with attempts + 1; the attempt that reaches the cap fails."""
        self._check(QUEUED)
        require_utc(at)
        fails, message, attempts = rules.requeue_outcome(self.attempts, reason)
        if fails:
            self._failed(error=message, attempts=attempts, at=at)
        else:
            self._requeued(reason=message, attempts=attempts, at=at)

    def release(self, reason: str | None, at: datetime) -> None:
        """Back to the queue with attempts unchanged: the worker hands the task back
        because it is stopping, not because the run failed (a crash requeues)."""
        self._check(QUEUED)
        self._released(reason=rules.release_message(reason), at=require_utc(at))

    def worker_lost(self, at: datetime) -> None:
        """The worker stopped heartbeating while running this task."""
        self.requeue("worker crashed", at)

    def set_status(
        self,
        status: str,
        error: str | None = None,
        *,
        at: datetime,
        worker_id: str | None = None,
        output_location: str | None = None,
    ) -> None:
        """The worker PATCH endpoint: any status the transition table allows."""
        self._check(rules.require_status(status))
        if status == IN_PROGRESS:
            self.claim(worker_id or "", at)
        elif status == COMPLETE:
            self.complete(output_location, at)
        elif status == FAILED:
            self.fail(error or "Failed", at)
        elif status == CANCELLED:
            self.cancel(at, reason=error)
        else:
            self.requeue(error, at)

    def record_cost(self, cost: Decimal | float | int | str) -> None:
        """The charge of a completed task, set once."""
        if self.status != COMPLETE:
            raise ValidationError(
                f"task {self.id} is {self.status!r}; only a Complete task has a cost"
            )
        amount = rules.require_cost(cost)
        if self.cost is None:
            self._cost_recorded(cost=amount)

    def spawn(self, task_ids: Iterable[UUID]) -> None:
        """Records the children of an orchestrator (segments, stitch), in order."""
        if not self.is_orchestrator:
            raise ValidationError(f"task {self.id} is a {self.task_type}, not an orchestrator")
        if self.is_terminal:
            raise ValidationError(f"orchestrator {self.id} is {self.status!r}; it spawns no more")
        new = [t for t in dict.fromkeys(task_ids) if t not in self.child_task_ids]
        if new:
            self._children_spawned(task_ids=new)

    def add_dependant(self, task_id: UUID) -> None:
        if task_id == self.id:
            raise ValidationError(f"task {task_id} cannot depend on itself")
        if task_id not in self.dependants:
            self._dependant_added(task_id=task_id)

    def _check(self, requested: str) -> None:
        if requested not in TRANSITIONS[self.status]:
            raise InvalidTransitionError(self.id, self.status, requested, TRANSITIONS[self.status])

    def _running(self, what: str) -> None:
        if self.status != IN_PROGRESS:
            raise TaskNotInProgressError(
                f"cannot {what} task {self.id}: it is {self.status!r}, not {IN_PROGRESS!r}"
            )

    # -- state ---------------------------------------------------------------
    @event(Claimed)
    def _claimed(self, worker_id: str, at: datetime) -> None:
        self.status = IN_PROGRESS
        self.worker_id = worker_id
        self.started_at = at
        self.progress = None
        self.error_message = None

    @event(StartReset)
    def _start_reset(self, at: datetime) -> None:
        self.started_at = at

    @event(ProgressReported)
    def _progress_reported(self, step: int, total: int) -> None:
        self.progress = (step, total)

    @event(Completed)
    def _completed(
        self,
        output_location: str | None,
        thumbnail_url: str | None,
        result_data: dict[str, Any],
        at: datetime,
    ) -> None:
        self.status = COMPLETE
        self.output_location = output_location
        self.thumbnail_url = thumbnail_url
        self.result_data = result_data
        self.processed_at = at

    @event(Failed)
    def _failed(self, error: str, attempts: int, at: datetime) -> None:
        self.status = FAILED
        self.error_message = error
        self.attempts = attempts
        self.processed_at = at

    @event(Cancelled)
    def _cancelled(self, reason: str | None, at: datetime) -> None:
        self.status = CANCELLED
        self.error_message = reason
        self.processed_at = at

    @event(Requeued)
    def _requeued(self, reason: str, attempts: int, at: datetime) -> None:
        self.attempts = attempts
        self._back_in_queue(reason)

    @event(Released)
    def _released(self, reason: str, at: datetime) -> None:
        self._back_in_queue(reason)

    def _back_in_queue(self, reason: str) -> None:
        """The state Requeued and Released share: Queued, unclaimed, why on the task."""
        self.status = QUEUED
        self.error_message = reason
        self.worker_id = None
        self.started_at = None
        self.progress = None

    @event(CostRecorded)
    def _cost_recorded(self, cost: Decimal) -> None:
        self.cost = cost

    @event(ChildrenSpawned)
    def _children_spawned(self, task_ids: list[UUID]) -> None:
        self.child_task_ids.extend(task_ids)

    @event(DependantAdded)
    def _dependant_added(self, task_id: UUID) -> None:
        self.dependants.append(task_id)

"""The task verbs: reads, status changes, completion; creation (`creation.py`) and
claims (`claims.py`) are composed in (liveness: `liveness.py`).

Claims and every exit from In Progress save the task with its owner's `Workload` and
its `Worker`, atomically: exactly one worker wins a task (optimistic concurrency on
the task), and an owner never runs more than five at once (see `domain.workload`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

from domain.errors import (
    GenerationNotFoundError,
    InvalidTransitionError,
    TaskNotFoundError,
    ValidationError,
)
from domain.metadata import CommandMeta
from domain.services.base import Decision
from domain.services.claims import TaskClaims, worker_meta
from domain.services.creation import TaskCreation, user_meta
from domain.services.lifecycle import Batch
from domain.services.liveness import credential_of, require_own_worker
from domain.services.taskresults import ProgressReported, TaskChanged, TaskClaimed, TaskCompleted
from domain.services.written import PendingCancelled, parsed
from domain.task import (
    CANCELLED,
    COMPLETE,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    STATUSES,
    Task,
)
from domain.workload import Workload


class TaskServices(TaskCreation, TaskClaims):
    """`user_id` is the acting user (None: a trusted caller); `worker_id`, when given,
    must hold the running task it acts on, and belong to the caller's credential
    (`meta.credential`; another credential's worker is not found, see `liveness.py`)."""

    def task(self, task_id: object, user_id: str | None = None) -> Task:
        """A task (another user's answers not found, like one that does not exist)."""
        task = self._load(task_id, Task, TaskNotFoundError)
        if user_id is not None and task.owner_id != user_id:
            raise TaskNotFoundError(task.id)
        return task

    def task_of_generation(self, generation_id: object, user_id: str | None = None) -> Task:
        """The task that made a generation: the one it was created by (its first
        `task_ids` entry), else the one that made its primary variant, else any variant's
        `source_task_id`. A generation made by no task (an upload) has none: not found."""
        generation = self.generation(generation_id, user_id)  # type: ignore[attr-defined]
        if generation.deleted:
            raise GenerationNotFoundError(generation.id)
        candidates = list(generation.task_ids)
        primary = generation.variants.get(generation.primary_variant_id)
        if primary is not None and primary.source_task_id is not None:
            candidates.append(primary.source_task_id)
        candidates += [
            v.source_task_id for v in generation.variants.values() if v.source_task_id is not None
        ]
        for task_id in candidates:
            try:
                return self.task(task_id)
            except TaskNotFoundError:
                continue
        raise TaskNotFoundError(f"of generation {generation.id}")

    def _own_worker(self, worker_id: str | None, meta: CommandMeta | None) -> None:
        require_own_worker(self._batch(), worker_id, credential_of(meta))

    # -- status changes --------------------------------------------------------
    def report_progress(
        self,
        task_id: object,
        step: int,
        total: int,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> ProgressReported:
        def act(batch: Batch, task: Task) -> None:
            task.report_progress(step, total)

        self._own_worker(worker_id, meta)
        result = self._on_task(worker_meta(worker_id, meta), task_id, None, worker_id, act)
        return ProgressReported(
            task_id=result.task_id,
            status=result.status,
            changed=result.changed,
            progress=(step, total),
            position=result.position,
            replayed=result.replayed,
        )

    def reset_task_start(
        self,
        task_id: object,
        worker_id: str | None = None,
        now: datetime | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskChanged:
        """The worker loaded its model: billing time starts now."""

        def act(batch: Batch, task: Task) -> None:
            task.reset_start(batch.at)

        self._own_worker(worker_id, meta)
        return self._on_task(worker_meta(worker_id, meta), task_id, None, worker_id, act, now)

    def fail_task(
        self,
        task_id: object,
        error: str,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskChanged:
        def act(batch: Batch, task: Task) -> None:
            self._change(batch, task, task.fail, error, batch.at)

        self._own_worker(worker_id, meta)
        return self._on_task(worker_meta(worker_id, meta), task_id, None, worker_id, act)

    def requeue_task(
        self,
        task_id: object,
        reason: str | None = None,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskChanged:
        """Back to the queue with attempts + 1; the third attempt fails (and cascades)."""

        def act(batch: Batch, task: Task) -> None:
            self._change(batch, task, task.requeue, reason, batch.at)

        self._own_worker(worker_id, meta)
        return self._on_task(worker_meta(worker_id, meta), task_id, None, worker_id, act)

    def release_task(
        self,
        task_id: object,
        reason: str | None = None,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskChanged:
        """Back to the queue with attempts unchanged: the holding worker is shutting down
        gracefully and hands back what it did not finish (a crash uses `requeue_task`)."""

        def act(batch: Batch, task: Task) -> None:
            self._change(batch, task, task.release, reason, batch.at)

        self._own_worker(worker_id, meta)
        return self._on_task(worker_meta(worker_id, meta), task_id, None, worker_id, act)

    def cancel_task(
        self,
        task_id: object,
        user_id: str | None,
        reason: str | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskChanged:
        def act(batch: Batch, task: Task) -> None:
            self._change(batch, task, task.cancel, batch.at, reason)

        return self._on_task(user_meta(user_id, meta), task_id, user_id, None, act)

    def cancel_pending(
        self, project_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> PendingCancelled:
        """Cancels every Queued task of the project (their families follow)."""

        def decide() -> Decision[PendingCancelled]:
            batch = self._batch()
            project = self._owned_project(batch, project_id, user_id)
            workload = batch.find(Workload.id_for(project.owner_id))
            queued = workload.queued_in(project.id) if isinstance(workload, Workload) else []
            for task in [self._task(batch, t) for t in queued]:
                if task.status == QUEUED:
                    self._change(batch, task, task.cancel, batch.at, "cancel pending")
            changed = batch.status_changes()
            return batch.changed, PendingCancelled(
                project_id=project.id,
                changed=changed,
                cancelled=sum(s == CANCELLED for s in changed.values()),
            )

        return self._command(user_meta(user_id, meta), decide)

    def update_status(
        self,
        task_id: object,
        status: str,
        error_message: str | None = None,
        worker_id: str | None = None,
        output_location: str | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskChanged | TaskClaimed | TaskCompleted:
        """The generic PATCH: any status the transition table allows from the current one."""
        if status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)} (got {status!r})")
        self._own_worker(worker_id, meta)
        task = self._task(self._batch(), task_id)
        if status not in task.allowed_transitions:
            raise InvalidTransitionError(task.id, task.status, status, task.allowed_transitions)
        if status == IN_PROGRESS:
            if not worker_id:
                raise ValidationError("In Progress needs the worker_id that claims the task")
            return self.claim_task(task_id, worker_id, meta=meta)
        if status == COMPLETE:
            return self.complete_task(task_id, output_location, worker_id=worker_id, meta=meta)
        if status == FAILED:
            return self.fail_task(task_id, error_message or "Failed", worker_id, meta)
        if status == CANCELLED:
            return self.cancel_task(task_id, None, error_message, meta=worker_meta(worker_id, meta))
        return self.requeue_task(task_id, error_message, worker_id, meta)

    # -- completion ------------------------------------------------------------
    def complete_task(
        self,
        task_id: object,
        output_location: str | None,
        thumbnail_url: str | None = None,
        result_data: Mapping[str, object] | None = None,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskCompleted:
        """Complete, its result routed into the gallery and its cost charged, in one save;
        refused (nothing stored) unless the task is In Progress."""

        def decide() -> Decision[TaskCompleted]:
            batch = self._batch()
            task = self._task(batch, task_id)
            self._check_holder(task, worker_id)
            routed = self._complete_in(batch, task, output_location, thumbnail_url, result_data)
            return batch.changed, parsed(
                TaskCompleted,
                {
                    **routed,
                    "task_id": task.id,
                    "status": task.status,
                    "changed": batch.status_changes(),
                },
            )

        self._own_worker(worker_id, meta)
        return self._command(worker_meta(worker_id, meta), decide)

"""Claiming: a worker takes the best eligible task (or a named one), saved with the
owner's `Workload` and its `Worker` so exactly one worker wins it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from domain.catalogue import RUN_TYPES
from domain.claiming import Candidate, ineligibility, next_for_worker
from domain.errors import (
    ConcurrencyConflictError,
    InsufficientCreditsError,
    InvalidTransitionError,
    TaskNotClaimableError,
    ValidationError,
)
from domain.metadata import CommandMeta
from domain.services.base import Result, as_uuid
from domain.services.base import now as _now
from domain.services.lifecycle import Batch, TaskLifecycle
from domain.services.liveness import credential_of, worker_for
from domain.task import IN_PROGRESS, QUEUED, Task

# A claim that keeps losing races gives up and answers "nothing now"; the worker polls again.
CLAIM_ROUNDS = 4


def worker_meta(worker_id: str | None, meta: CommandMeta | None) -> CommandMeta | None:
    return meta or (CommandMeta.for_worker(worker_id) if worker_id else None)


class TaskClaims(TaskLifecycle):
    """Claims: `claim_next` over the claim queue's candidates, `claim_task` by id."""

    def claim_next(
        self,
        worker_id: str,
        run_type: str,
        current_model: str | None,
        candidate_ids: Iterable[object],
        now: datetime | None = None,
        meta: CommandMeta | None = None,
    ) -> Result | None:
        """Claims the best eligible candidate (a bounded page read from the claim queue),
        re-checked on the aggregates and ordered by `domain.claiming.order_for_worker`:
        over five minutes waiting first, then the worker's loaded model, then oldest.
        None when nothing here may be claimed now."""
        if run_type not in RUN_TYPES:
            raise ValidationError(
                f"run_type must be one of {', '.join(RUN_TYPES)} (got {run_type!r})"
            )
        ids = [as_uuid(c, "task id") for c in candidate_ids]
        at = now or _now()

        def decide() -> Any:
            batch = self._batch(at)
            worker_for(batch, worker_id, credential_of(meta))
            task = self._pick(batch, ids, run_type, current_model)
            if task is None:
                return [], {"task_id": None}
            self._change(batch, task, task.claim, worker_id, at)
            return batch.changed, self._claimed(task)

        for _ in range(CLAIM_ROUNDS):
            try:
                result = self._command(worker_meta(worker_id, meta), decide)
            except (ConcurrencyConflictError, TaskNotClaimableError):
                continue
            return result if result.get("task_id") else None
        return None

    def claim_task(
        self,
        task_id: object,
        worker_id: str,
        now: datetime | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """Claims this task, or says why not (not Queued, no credits, not claimable)."""
        at = now or _now()

        def decide() -> Any:
            batch = self._batch(at)
            worker_for(batch, worker_id, credential_of(meta))
            task = self._task(batch, task_id)
            self._require_claimable(batch, task)
            self._change(batch, task, task.claim, worker_id, at)
            return batch.changed, self._claimed(task)

        return self._command(worker_meta(worker_id, meta), decide)

    def _pick(self, batch: Batch, ids: list[Any], run_type: str, model: str | None) -> Task | None:
        queued = [t for t in map(batch.find, ids) if isinstance(t, Task) and t.status == QUEUED]
        owners = {t.owner_id for t in queued}
        found = next_for_worker(
            [self._candidate(batch, t) for t in queued],
            run_type=run_type,
            worker_model=model,
            now=batch.at,
            balances={o: self._balance(batch, o) for o in owners},
            in_progress={o: self._running(batch, o) for o in owners},
        )
        return None if found is None else self._task(batch, found.task_id)

    def _candidate(self, batch: Batch, task: Task) -> Candidate:
        statuses = {d: t.status for d in task.dependant_on if isinstance(t := batch.find(d), Task)}
        return Candidate.of(task, statuses)

    def _require_claimable(self, batch: Batch, task: Task) -> None:
        if task.status != QUEUED:
            raise InvalidTransitionError(
                task.id, task.status, IN_PROGRESS, task.allowed_transitions
            )
        balance = self._balance(batch, task.owner_id)
        if balance <= 0:
            raise InsufficientCreditsError(
                f"the owner of task {task.id} has a balance of {balance} credits"
            )
        reason = ineligibility(
            self._candidate(batch, task),
            run_type=task.run_type,
            balances={task.owner_id: balance},
            in_progress={task.owner_id: self._running(batch, task.owner_id)},
        )
        if reason:
            raise TaskNotClaimableError(f"task {task.id} cannot be claimed: {reason}")

    @staticmethod
    def _claimed(task: Task) -> Result:
        return {
            "task_id": str(task.id),
            "task_type": task.task_type,
            "params": task.params,
            "project_id": str(task.project_id),
            "owner_id": task.owner_id,
            "run_type": task.run_type,
            "model_name": task.model_name,
            "attempts": task.attempts,
        }

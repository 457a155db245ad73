"""Claiming: a worker takes the best eligible task (or a named one), saved with the
owner's `Workload` and its `Worker` so exactly one worker wins it.

`complete_and_claim` is a worker's completion and its next claim as one decision and
one save: the completion exactly as `complete_task` makes it, then the claim exactly
as `claim_next` makes it, on the aggregates the two share (the worker, the owner's
workload and ledger, the catalogue) loaded once, on this process's cached copies
where the save's version check or one query proves them current (`cached.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import suppress
from datetime import datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

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
from domain.services.base import Decision, as_uuid
from domain.services.base import now as _now
from domain.services.cached import decided_on_cache, keep
from domain.services.completion import TaskCompletion
from domain.services.lifecycle import Batch
from domain.services.liveness import credential_of, require_own_worker, worker_for
from domain.services.taskresults import CompletedAndClaimed, NothingClaimed, TaskClaimed
from domain.services.written import parsed
from domain.task import IN_PROGRESS, QUEUED, Task

# A claim that keeps losing races gives up and answers "nothing now"; the worker polls again.
CLAIM_ROUNDS = 4
# A completion with a claim that lost this many races is saved without the claim: the
# claim must never hold a completion up (the worker claims on its own afterwards).
CHAINED_CLAIM_ROUNDS = 2


def worker_meta(worker_id: str | None, meta: CommandMeta | None) -> CommandMeta | None:
    return meta or (CommandMeta.for_worker(worker_id) if worker_id else None)


def _run_type(run_type: str) -> str:
    if run_type not in RUN_TYPES:
        raise ValidationError(f"run_type must be one of {', '.join(RUN_TYPES)} (got {run_type!r})")
    return run_type


def claimed_task(task: Task) -> TaskClaimed:
    return TaskClaimed(
        task_id=task.id,
        task_type=task.task_type,
        params=task.params,
        project_id=task.project_id,
        owner_id=task.owner_id,
        run_type=task.run_type,
        model_name=task.model_name,
        attempts=task.attempts,
    )


class TaskClaims(TaskCompletion):
    """Claims: `claim_next` over the claim queue's candidates, `claim_task` by id, and
    `complete_and_claim`."""

    def claim_next(
        self,
        worker_id: str,
        run_type: str,
        current_model: str | None,
        candidate_ids: Iterable[object],
        now: datetime | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskClaimed | None:
        """Claims the best eligible candidate (a bounded page read from the claim queue),
        re-checked on the aggregates and ordered by `domain.claiming.order_for_worker`:
        over five minutes waiting first, then the worker's loaded model, then oldest.
        None when nothing here may be claimed now."""
        _run_type(run_type)
        ids = [as_uuid(c, "task id") for c in candidate_ids]
        at = now or _now()
        tries: list[list[Aggregate]] = []  # per decision: what it would save

        def claim(batch: Batch) -> TaskClaimed | NothingClaimed:
            found = self._claim_in(
                batch, worker_id, credential_of(meta), ids, run_type, current_model
            )
            return NothingClaimed() if found is None else found

        def decide() -> Decision[TaskClaimed | NothingClaimed]:
            # The first try on this process's cached copies (checked), then fresh loads.
            found: tuple[Batch, TaskClaimed | NothingClaimed] | None = (
                None if tries else decided_on_cache(self.repository, at, claim)
            )
            if found is None:
                batch = self._batch(at)
                found = batch, claim(batch)
            batch, claimed = found
            tries.append(batch.changed)
            return (batch.changed, claimed) if isinstance(claimed, TaskClaimed) else ([], claimed)

        for _ in range(CLAIM_ROUNDS):
            try:
                result = self._command(worker_meta(worker_id, meta), decide)
            except (ConcurrencyConflictError, TaskNotClaimableError):
                continue
            if not isinstance(result, TaskClaimed):
                return None
            if not result.replayed:  # its completion finds the task in the cache
                keep(self.repository, tries[-1])
            return result
        return None

    def claim_task(
        self,
        task_id: object,
        worker_id: str,
        now: datetime | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskClaimed:
        """Claims this task, or says why not (not Queued, no credits, not claimable)."""
        at = now or _now()

        def decide() -> Decision[TaskClaimed]:
            batch = self._batch(at)
            worker_for(batch, worker_id, credential_of(meta))
            task = self._task(batch, task_id)
            self._require_claimable(batch, task)
            self._change(batch, task, task.claim, worker_id, at)
            return batch.changed, claimed_task(task)

        return self._command(worker_meta(worker_id, meta), decide)

    def complete_and_claim(
        self,
        task_id: object,
        output_location: str | None,
        thumbnail_url: str | None = None,
        result_data: Mapping[str, object] | None = None,
        *,
        worker_id: str,
        run_type: str,
        current_model: str | None,
        candidate_ids: Iterable[object],
        meta: CommandMeta | None = None,
    ) -> CompletedAndClaimed:
        """`complete_task` of a task this worker holds, then `claim_next` for the same
        worker, in one save. Answers as `complete_task`, with `claimed`: what
        `claim_next` answers, or None when nothing here may be claimed now. A refused
        completion raises as `complete_task` does and claims nothing; a claim that is
        refused or keeps losing races leaves the completion to be saved alone."""
        _run_type(run_type)
        ids = [as_uuid(c, "task id") for c in candidate_ids]
        meta = worker_meta(worker_id, meta)
        credential = credential_of(meta)
        rounds: list[int] = []
        saved: list[Aggregate] = []

        def decide_on(batch: Batch, claiming: bool) -> CompletedAndClaimed:
            require_own_worker(batch, worker_id, credential)
            task = self._task(batch, task_id)
            self._check_holder(task, worker_id)
            routed = self._complete_in(batch, task, output_location, thumbnail_url, result_data)
            claimed = (
                self._claim_in(batch, worker_id, credential, ids, run_type, current_model)
                if claiming
                else None
            )
            return parsed(
                CompletedAndClaimed,
                {
                    **routed,
                    "task_id": task.id,
                    "status": task.status,
                    "changed": batch.status_changes(),
                    "claimed": None if claimed is None else claimed.fields_json(),
                },
            )

        def attempt(batch: Batch, claiming: bool) -> CompletedAndClaimed | None:
            """The decision; None if its claim was refused half-way (its changes must
            not be saved: the caller decides again, without the claim)."""
            try:
                return decide_on(batch, claiming)
            except (TaskNotClaimableError, InsufficientCreditsError):
                if not claiming:
                    raise
                return None

        def decide() -> Decision[CompletedAndClaimed]:
            rounds.append(len(rounds))
            claiming = len(rounds) <= CHAINED_CLAIM_ROUNDS
            at = _now()
            found = (
                decided_on_cache(self.repository, at, lambda b: attempt(b, claiming))
                if len(rounds) == 1
                else None
            )
            if found is None:
                batch = self._batch(at)
                result = attempt(batch, claiming)
                if result is None:
                    batch = self._batch(at)
                    result = decide_on(batch, False)
                found = batch, result
            batch, result = found
            saved[:] = batch.changed
            return batch.changed, result

        result = self._command(meta, decide)
        if not result.replayed:
            keep(self.repository, saved)
        return result

    def warm(self, task_ids: Iterable[object]) -> None:
        """Loads these tasks into this process's cache; a read, nothing written. A worker
        calls it with the candidates of its next claim while its current task runs: the
        claim then finds them without a query (still checked, see `cached.py`)."""
        for ident in task_ids:
            with suppress(AggregateNotFoundError):
                self.repository.get(as_uuid(ident, "task id"))

    def _claim_in(
        self,
        batch: Batch,
        worker_id: str,
        credential: str | None,
        ids: list[UUID],
        run_type: str,
        current_model: str | None,
    ) -> TaskClaimed | None:
        """Claims the best of `ids` for this worker in `batch` (None: none may be now)."""
        worker_for(batch, worker_id, credential)
        task = self._pick(batch, ids, run_type, current_model)
        if task is None:
            return None
        self._change(batch, task, task.claim, worker_id, batch.at)
        return claimed_task(task)

    def _pick(self, batch: Batch, ids: list[UUID], run_type: str, model: str | None) -> Task | None:
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

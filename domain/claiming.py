"""Who may run what next, and what goes down with a failed relative: pure rules over
plain snapshots, so the claim query, the dispatcher and the sweeper share one truth."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from domain.catalogue import GENERATION, ORCHESTRATION
from domain.task import CANCELLED, COMPLETE, FAILED, IN_PROGRESS, QUEUED, TERMINAL

if TYPE_CHECKING:
    from domain.task import Task

MAX_IN_PROGRESS_PER_OWNER = 5
STARVATION_AGE = timedelta(minutes=5)


@dataclass(frozen=True)
class Candidate:
    """What claiming needs to know about one task."""

    task_id: UUID
    owner_id: str
    run_type: str
    model_name: str | None
    created_at: datetime
    dependency_statuses: tuple[str, ...] = ()
    category: str = GENERATION
    status: str = QUEUED

    @classmethod
    def of(cls, task: Task, statuses: Mapping[UUID, str]) -> Candidate:
        """A snapshot of a task; a dependency missing from `statuses` counts as unknown."""
        deps = tuple(statuses.get(d, "Unknown") for d in task.dependant_on)
        return cls(
            task.id,
            task.owner_id,
            task.run_type,
            task.model_name,
            task.created_at,
            deps,
            task.category,
            task.status,
        )


def ineligibility(
    candidate: Candidate,
    *,
    run_type: str,
    balances: Mapping[str, Decimal],
    in_progress: Mapping[str, int],
) -> str | None:
    """Why a worker of `run_type` may not claim this task now; None when it may.
    `in_progress` counts each owner's running tasks, orchestrators not included."""
    if candidate.status != QUEUED:
        return f"it is {candidate.status!r}, not {QUEUED!r}"
    if candidate.run_type != run_type:
        return f"it runs on {candidate.run_type!r} workers, not {run_type!r}"
    waiting = [s for s in candidate.dependency_statuses if s != COMPLETE]
    if waiting:
        return f"{len(waiting)} of its dependencies are not Complete ({', '.join(waiting)})"
    balance = balances.get(candidate.owner_id, Decimal(0))
    if balance <= 0:
        return f"its owner's balance is {balance}"
    running = in_progress.get(candidate.owner_id, 0)
    if running >= MAX_IN_PROGRESS_PER_OWNER:
        return f"its owner already runs {running} tasks (max {MAX_IN_PROGRESS_PER_OWNER})"
    return None


def eligible(
    candidate: Candidate,
    *,
    run_type: str,
    balances: Mapping[str, Decimal],
    in_progress: Mapping[str, int],
) -> bool:
    return (
        ineligibility(candidate, run_type=run_type, balances=balances, in_progress=in_progress)
        is None
    )


def _priority(candidate: Candidate, worker_model: str | None, now: datetime) -> tuple[object, ...]:
    if now - candidate.created_at > STARVATION_AGE:
        return (0, candidate.created_at, str(candidate.task_id))
    affinity = 0 if worker_model and candidate.model_name == worker_model else 1
    return (1, affinity, candidate.created_at, str(candidate.task_id))


def order_for_worker(
    candidates: Iterable[Candidate], worker_model: str | None, now: datetime
) -> list[Candidate]:
    """Tasks waiting over 5 minutes first, oldest first; then those of the worker's
    loaded model; then the rest, oldest first."""
    return sorted(candidates, key=lambda c: _priority(c, worker_model, now))


def next_for_worker(
    candidates: Iterable[Candidate],
    *,
    run_type: str,
    worker_model: str | None,
    now: datetime,
    balances: Mapping[str, Decimal],
    in_progress: Mapping[str, int],
) -> Candidate | None:
    """The one task this worker should claim next, if any."""
    ready = [
        c
        for c in candidates
        if eligible(c, run_type=run_type, balances=balances, in_progress=in_progress)
    ]
    ordered = order_for_worker(ready, worker_model, now)
    return ordered[0] if ordered else None


def running_counts(tasks: Iterable[Task]) -> dict[str, int]:
    """In Progress tasks per owner, orchestrators not counted (they wait, they don't run)."""
    counts: dict[str, int] = {}
    for task in tasks:
        if task.status == IN_PROGRESS and task.category != ORCHESTRATION:
            counts[task.owner_id] = counts.get(task.owner_id, 0) + 1
    return counts


class _Dependent(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def dependant_on(self) -> Sequence[UUID]: ...


def dependency_failed(task: _Dependent, statuses: Mapping[UUID, str]) -> bool:
    """A Queued task one of whose dependencies Failed or was Cancelled (it must fail too)."""
    return task.status == QUEUED and any(
        statuses.get(d) in (FAILED, CANCELLED) for d in task.dependant_on
    )


class _Member(Protocol):
    @property
    def id(self) -> UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def orchestrator_task_id(self) -> UUID | None: ...


def cascade_targets(tasks: Iterable[_Member], failed_task_id: UUID) -> list[UUID]:
    """The non-terminal relatives of a failed or cancelled task in its orchestrator family
    (the orchestrator and all its children), in the order given; empty for a loner."""
    members = list(tasks)
    by_id = {t.id: t for t in members}
    failed = by_id.get(failed_task_id)
    if failed is None:
        return []
    root = failed.orchestrator_task_id or failed_task_id
    family = [t for t in members if t.id == root or t.orchestrator_task_id == root]
    if len(family) < 2:
        return []
    return [t.id for t in family if t.id != failed_task_id and t.status not in TERMINAL]


def orchestrator_outcome(
    children: Iterable[_Member], expected: int | None = None
) -> tuple[str, str | None] | None:
    """What an orchestrator becomes from its children (`expected`: how many it should
    have): Failed with "N of M segments failed" when any failed or was cancelled, or when
    all finished but fewer exist than expected; Complete when all completed; else None."""
    statuses = [c.status for c in children]
    if not statuses:
        return None
    total = max(len(statuses), expected or 0)
    failed = sum(s in (FAILED, CANCELLED) for s in statuses)
    if not failed and not all(s == COMPLETE for s in statuses):
        return None
    failed = failed or total - len(statuses)  # missing children count once the rest is done
    if failed:
        return FAILED, f"{failed} of {total} segments failed"
    return COMPLETE, None

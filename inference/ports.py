"""What the dispatcher needs from the rest of the studio, as small protocols.

`TaskCommands` is a subset of `domain.studio.Studio`'s verbs (the studio fits it
as is); `CandidateSource` finds Queued task ids worth trying to claim, and is
implemented by the composition root over the task board's claim queue (the
`projections` layer, which `inference` may not import). Tests and other hosts
can swap either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from domain.services.taskresults import (
    HeartbeatAnswered,
    ProgressReported,
    TaskChanged,
    TaskClaimed,
    WorkersSwept,
)

# A completion's answer: the studio's `TaskCompleted` (or `CompletedAndClaimed`), read
# as its JSON mapping so that a host's plain dict fits too.
Completed = Mapping[str, Any]


class Candidate(NamedTuple):
    """A Queued task the source believes claimable, and the run type it needs."""

    task_id: str
    run_type: str


class CandidateSource(Protocol):
    """Claimable task ids, oldest first: Queued, dependencies complete (the claim queue).

    A source may lag the event log (a projection); the claim re-checks every rule on
    the aggregates, so a stale candidate costs one wasted look-up, never a wrong claim.
    """

    def candidates(
        self, run_types: Sequence[str], task_types: Collection[str], limit: int
    ) -> list[Candidate]: ...


class TaskCommands(Protocol):
    """The studio verbs a worker uses (`domain.services.tasks.TaskServices`)."""

    def claim_next(
        self,
        worker_id: str,
        run_type: str,
        current_model: str | None,
        candidate_ids: Iterable[object],
    ) -> TaskClaimed | None: ...

    def heartbeat(
        self, worker_id: str, task_ids: Iterable[object] = (), *, exhaustive: bool = False
    ) -> HeartbeatAnswered: ...

    def report_progress(
        self, task_id: object, step: int, total: int, worker_id: str | None = None
    ) -> ProgressReported: ...

    def complete_task(
        self,
        task_id: object,
        output_location: str | None,
        thumbnail_url: str | None = None,
        result_data: Mapping[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> Completed: ...

    def fail_task(
        self, task_id: object, error: str, worker_id: str | None = None
    ) -> TaskChanged: ...

    def requeue_task(
        self, task_id: object, reason: str | None = None, worker_id: str | None = None
    ) -> TaskChanged: ...

    def release_task(
        self, task_id: object, reason: str | None = None, worker_id: str | None = None
    ) -> TaskChanged: ...

    def sweep_lost_workers(self) -> WorkersSwept: ...


class SerialCommands:
    """One worker's commands, those that change its `Worker` aggregate one at a time.

    A claim takes the task onto the worker and a completion releases it, so a
    dispatcher's concurrent claims, completions and heartbeats would only conflict
    on that aggregate and be retried from scratch; waiting is cheaper. Progress
    reports (the task alone) and sweeps pass straight through.
    """

    def __init__(self, tasks: TaskCommands) -> None:
        self._tasks = tasks
        self._lock = threading.Lock()

    def claim_next(
        self,
        worker_id: str,
        run_type: str,
        current_model: str | None,
        candidate_ids: Iterable[object],
    ) -> TaskClaimed | None:
        with self._lock:
            return self._tasks.claim_next(worker_id, run_type, current_model, candidate_ids)

    def heartbeat(
        self, worker_id: str, task_ids: Iterable[object] = (), *, exhaustive: bool = False
    ) -> HeartbeatAnswered:
        with self._lock:
            return self._tasks.heartbeat(worker_id, task_ids, exhaustive=exhaustive)

    def report_progress(
        self, task_id: object, step: int, total: int, worker_id: str | None = None
    ) -> ProgressReported:
        return self._tasks.report_progress(task_id, step, total, worker_id=worker_id)

    def complete_task(
        self,
        task_id: object,
        output_location: str | None,
        thumbnail_url: str | None = None,
        result_data: Mapping[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> Completed:
        with self._lock:
            return self._tasks.complete_task(
                task_id,
                output_location,
                thumbnail_url=thumbnail_url,
                result_data=result_data,
                worker_id=worker_id,
            )

    def complete_and_claim(
        self,
        task_id: object,
        output_location: str | None,
        thumbnail_url: str | None = None,
        result_data: Mapping[str, Any] | None = None,
        *,
        worker_id: str,
        run_type: str,
        current_model: str | None,
        candidate_ids: Iterable[object],
    ) -> Completed:
        """`complete_task` and the worker's next claim in one command (the studio's
        `complete_and_claim`; see `chains`)."""
        with self._lock:
            chained: Completed = self._tasks.complete_and_claim(  # type: ignore[attr-defined]
                task_id,
                output_location,
                thumbnail_url,
                result_data,
                worker_id=worker_id,
                run_type=run_type,
                current_model=current_model,
                candidate_ids=candidate_ids,
            )
            return chained

    @property
    def chains(self) -> bool:
        """Whether the commands behind have `complete_and_claim` (the studio has)."""
        return callable(getattr(self._tasks, "complete_and_claim", None))

    def fail_task(self, task_id: object, error: str, worker_id: str | None = None) -> TaskChanged:
        with self._lock:
            return self._tasks.fail_task(task_id, error, worker_id=worker_id)

    def requeue_task(
        self, task_id: object, reason: str | None = None, worker_id: str | None = None
    ) -> TaskChanged:
        with self._lock:
            return self._tasks.requeue_task(task_id, reason, worker_id=worker_id)

    def release_task(
        self, task_id: object, reason: str | None = None, worker_id: str | None = None
    ) -> TaskChanged:
        with self._lock:
            return self._tasks.release_task(task_id, reason, worker_id=worker_id)

    def sweep_lost_workers(self) -> WorkersSwept:
        return self._tasks.sweep_lost_workers()


# A finished task's output location (stitches read their segments' outputs), or None.
OutputLookup = Callable[[str], str | None]


def studio_outputs(studio: Any) -> OutputLookup:
    """Output locations read from the `Task` aggregates of a studio."""
    from domain.task import Task

    def output_of(task_id: str) -> str | None:
        found = studio.repository.get(UUID(str(task_id)))
        return found.output_location if isinstance(found, Task) else None

    return output_of

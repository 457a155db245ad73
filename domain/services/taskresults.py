"""What the task verbs answer: creation, runs, claims, status changes, completion and
the workers' heartbeats and sweeps (the `Written` shapes of `domain/services/tasks.py`,
`claims.py`, `creation.py`, `orchestration.py` and `liveness.py`; see
`domain.services.written` for how a shape is declared, answered and replayed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.services.written import NOT_ANSWERED, OMIT_NONE, Written


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TasksCreated(Written):
    """`status` when one task was made. Each task's own key may have made it before:
    `replayed` when that holds for every task, `some_replayed` (answered as
    `"replayed": false`) when only for some."""

    STORED_AS = "TasksCreated"

    task_ids: tuple[UUID, ...]
    status: str | None = field(default=None, metadata=OMIT_NONE)
    some_replayed: bool = field(default=False, metadata=NOT_ANSWERED)

    def as_json(self) -> dict[str, Any]:
        body = Written.as_json(self)  # no super(): see __init_subclass__
        if self.some_replayed and not self.replayed:
            body["replayed"] = False
        return body


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TaskCreated(Written):
    """One task of `create_task`: answered as before, its id and type after `position`."""

    STORED_AS = "TaskCreated"
    AFTER_POSITION = ("task_id", "task_type")

    task_id: UUID
    task_type: str
    status: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RunStarted(Written):
    """A travel or join run: its orchestrator, segments and stitch (all in `task_ids`)."""

    STORED_AS = "RunStarted"

    orchestrator_task_id: UUID
    run_id: str | None
    parent_generation_id: UUID | None
    segment_task_ids: tuple[UUID, ...]
    stitch_task_id: UUID | None
    task_ids: tuple[UUID, ...]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class HeartbeatAnswered(Written):
    """`stop`: the tasks the worker reported but no longer holds (it should drop them).
    `changed` (not answered): the tasks an exhaustive heartbeat requeued, by id."""

    STORED_AS = "HeartbeatAnswered"

    worker_id: str
    stop: tuple[UUID, ...]
    changed: dict[str, str] = field(default_factory=dict, metadata=NOT_ANSWERED)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class WorkerSwept(Written):
    """One worker's sweep: whether it was lost, and the status of each task it changed."""

    STORED_AS = "WorkerSwept"

    lost: bool
    changed: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class WorkersSwept(Written):
    """A sweep over the roster: the workers found lost, every task status it changed."""

    STORED_AS = "WorkersSwept"

    lost_workers: tuple[str, ...]
    changed: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class StatusesChanged(Written):
    """The status of each task the command changed, by id."""

    STORED_AS = "StatusesChanged"

    changed: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TaskClaimed(Written):
    """A claim: what the worker needs to run the task."""

    STORED_AS = "TaskClaimed"

    task_id: UUID
    task_type: str
    params: dict[str, object]
    project_id: UUID
    owner_id: str
    run_type: str
    model_name: str | None
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NothingClaimed(Written):
    """No candidate may be claimed now (`claim_next` answers None)."""

    STORED_AS = "NothingClaimed"

    task_id: None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TaskChanged(Written):
    """A change of one task: its new status, and the status of every task it changed
    (the task itself and its cascade), by id."""

    STORED_AS = "TaskChanged"

    task_id: UUID
    status: str
    changed: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ProgressReported(Written):
    """A progress report: answered as a `TaskChanged` with `progress` [step, total] last."""

    STORED_AS = "ProgressReported"
    AFTER_POSITION = ("progress",)

    task_id: UUID
    status: str
    changed: dict[str, str]
    progress: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TaskCompleted(Written):
    """A completion: where its result went (`result`: none, generation, variant,
    child, ...; the ids it made or changed), its cost, then as a `TaskChanged`.
    `timeline_frame` is answered (perhaps null) when the result joined a shot."""

    STORED_AS = "TaskCompleted"

    result: str
    generation_id: UUID | None = field(default=None, metadata=OMIT_NONE)
    variant_id: UUID | None = field(default=None, metadata=OMIT_NONE)
    variant_type: str | None = field(default=None, metadata=OMIT_NONE)
    parent_generation_id: UUID | None = field(default=None, metadata=OMIT_NONE)
    parent_variant_id: UUID | None = field(default=None, metadata=OMIT_NONE)
    shot_id: UUID | None = field(default=None, metadata=OMIT_NONE)
    shot_generation_id: UUID | None = field(default=None, metadata=OMIT_NONE)
    timeline_frame: int | None = field(default=None, metadata=OMIT_NONE)
    cost: Decimal
    task_id: UUID
    status: str
    changed: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        body = Written.as_json(self)  # no super(): see __init_subclass__
        if self.shot_id is None or "timeline_frame" in body:
            return body
        ordered: dict[str, Any] = {}
        for key, value in body.items():
            ordered[key] = value
            if key == "shot_generation_id":
                ordered["timeline_frame"] = None
        return ordered


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CompletedAndClaimed(TaskCompleted):
    """`complete_and_claim`: the completion, then `claimed`, the claim's fields (as
    `TaskClaimed` answers them, without `position`) or None."""

    STORED_AS = "CompletedAndClaimed"

    claimed: dict[str, object] | None = None

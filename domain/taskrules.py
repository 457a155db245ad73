"""The Task aggregate's rules that are plain functions of values: what a new task
records, and what a progress report, a completion, a cost and a requeue may say.

The aggregate (`domain/task.py`) calls these and records what they return; none of
them reads or changes a task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NotRequired, TypedDict
from uuid import UUID

from domain.catalogue import TaskType, as_decimal
from domain.errors import InvalidParamsError, ValidationError
from domain.tasklinks import Links, as_uuid, model_name_of, no_dependency
from domain.taskstatus import MAX_ATTEMPTS, STATUSES, require_utc


class NewTask(TypedDict):
    """What `Task.create` is asked for: a Queued task of an (already resolved,
    active) catalogue type."""

    project_id: UUID
    owner_id: str
    task_type: TaskType
    params: Mapping[str, Any]
    at: datetime
    task_id: NotRequired[UUID | None]
    dependant_on: NotRequired[Iterable[UUID]]
    idempotency_key: NotRequired[str | None]
    request_hash: NotRequired[str | None]


def created_fields(request: NewTask) -> dict[str, Any]:
    """The `Task.Created` fields of a new task, or the error that refuses it."""
    params, owner_id, task_id = request["params"], request["owner_id"], request.get("task_id")
    if not isinstance(params, Mapping):
        raise InvalidParamsError(f"params must be an object (got {params!r})")
    if not owner_id or not isinstance(owner_id, str):
        raise ValidationError(f"a task needs an owner id (got {owner_id!r})")
    deps = [as_uuid(d, "dependant_on") or no_dependency(d) for d in request.get("dependant_on", ())]
    if task_id is not None and task_id in deps:
        raise ValidationError(f"task {task_id} cannot depend on itself")
    links = Links.from_params(params)
    task_type = request["task_type"]
    return dict(
        project_id=request["project_id"],
        owner_id=owner_id,
        task_type=task_type.name,
        run_type=task_type.run_type,
        category=task_type.category,
        model_name=model_name_of(params) or task_type.model_name,
        params=dict(params),
        dependant_on=list(dict.fromkeys(deps)),
        idempotency_key=request.get("idempotency_key"),
        created_at=require_utc(request["at"]),
        id=task_id,
        request_hash=request.get("request_hash"),
        **vars(links),
    )


def require_worker(worker_id: str) -> str:
    if not worker_id or not isinstance(worker_id, str):
        raise ValidationError(f"a claim needs a worker id (got {worker_id!r})")
    return worker_id


def require_status(status: str) -> str:
    if status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)} (got {status!r})")
    return status


def require_progress(step: int, total: int) -> None:
    for name, value in (("step", step), ("total", total)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"progress {name} must be a whole number (got {value!r})")
    if total < 1 or not 0 <= step <= total:
        raise ValidationError(
            f"progress must satisfy 0 ≤ step ≤ total, total ≥ 1 (got step={step}, total={total})"
        )


def require_outputs(
    output_location: str | None, thumbnail_url: str | None, result_data: object
) -> dict[str, Any]:
    """A completion's locations are non-empty strings (or None); its data, an object."""
    for name, value in (("output_location", output_location), ("thumbnail_url", thumbnail_url)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValidationError(f"{name} must be a non-empty string (got {value!r})")
    if result_data is not None and not isinstance(result_data, Mapping):
        raise ValidationError(f"result_data must be an object (got {result_data!r})")
    return dict(result_data or {})


def require_cost(cost: Decimal | float | int | str) -> Decimal:
    amount = as_decimal(cost, "cost")
    if amount < 0:
        raise ValidationError(f"a cost must be ≥ 0 (got {amount})")
    return amount


def failure_message(error: str | None) -> str:
    return str(error or "").strip() or "Failed"


def release_message(reason: str | None) -> str:
    """A worker hands a task back because it is stopping, not because the run failed."""
    cause = str(reason or "").strip() or "handed back"
    return f"Released: {cause} (not counted as an attempt)"


def requeue_outcome(attempts: int, reason: str | None) -> tuple[bool, str, int]:
    """Back to the queue with attempts + 1, or failed when that attempt reaches the cap:
    (fails, the message the task keeps, attempts)."""
    cause = str(reason or "").strip() or "returned to the queue"
    attempts += 1
    if attempts >= MAX_ATTEMPTS:
        return True, f"Failed: {cause} (attempt {attempts} of {MAX_ATTEMPTS})", attempts
    return False, f"Requeued: {cause} (attempt {attempts})", attempts

"""What a task costs: the seed's formula, in Decimal so credits never drift."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from domain.catalogue import PER_UNIT, TaskType, as_decimal
from domain.credits import round_credits
from domain.errors import ValidationError
from domain.task import COMPLETE, billable_seconds

if TYPE_CHECKING:
    from domain.task import Task


def _factor(factors: Mapping[str, Any], kind: str, key: object) -> Decimal | None:
    table = factors.get(kind)
    if not isinstance(table, Mapping) or key is None or str(key) not in table:
        return None
    return as_decimal(table[str(key)], f"cost_factors.{kind}[{key!r}]")


def _seconds(
    task_type: TaskType,
    started_at: datetime | None,
    processed_at: datetime | None,
    child_seconds: list[int] | None,
) -> int:
    if child_seconds is not None:
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in child_seconds):
            raise ValidationError(
                f"child seconds must be whole numbers ≥ 0 (got {child_seconds!r})"
            )
        return max(1, sum(child_seconds))
    if started_at is None or processed_at is None:
        raise ValidationError(
            f"a {task_type.name} task is billed per second and needs both its start and its "
            f"completion time (got {started_at!r}, {processed_at!r})"
        )
    return billable_seconds(started_at, processed_at)


def task_cost(
    task_type: TaskType,
    params: Mapping[str, Any],
    started_at: datetime | None,
    processed_at: datetime | None,
    child_seconds: list[int] | None = None,
) -> Decimal:
    """Per unit → unit cost; per second → rate * seconds (ceil, ≥ 1; an orchestrator
    passes its completed children's seconds); then * resolution factor, + frame-count
    factor, * model-type factor; rounded to 3 decimals."""
    per_unit = task_type.billing_type == PER_UNIT
    seconds = 1 if per_unit else _seconds(task_type, started_at, processed_at, child_seconds)
    cost = task_type.unit_cost if per_unit else task_type.base_cost_per_second * seconds
    factors = task_type.cost_factors
    resolution = _factor(factors, "resolution", params.get("resolution"))
    if resolution is not None:
        cost *= resolution
    per_frame = factors.get("frameCount")
    frames = params.get("frame_count")
    if per_frame and frames:
        cost += (
            as_decimal(per_frame, "cost_factors.frameCount")
            * as_decimal(frames, "params.frame_count")
            * seconds
        )
    model = _factor(factors, "modelType", params.get("model_type"))
    if model is not None:
        cost *= model
    return round_credits(cost)


def completed_child_seconds(children: Iterable[Task]) -> list[int]:
    """The billable seconds of an orchestrator's Complete children."""
    return [s for c in children if c.status == COMPLETE and (s := c.billable_seconds()) is not None]


def amount_to_charge(
    task: Task, task_type: TaskType, child_seconds: list[int] | None = None
) -> Decimal:
    """What to charge for a task now: nothing unless it completed, nothing for an
    orchestrator's child (its orchestrator pays for the children's seconds)."""
    if task.status != COMPLETE or task.orchestrator_task_id is not None:
        return Decimal(0)
    if task.is_orchestrator and child_seconds is None:
        raise ValidationError(
            f"orchestrator {task.id} is billed on its children's seconds; pass them"
        )
    return task_cost(task_type, task.params, task.started_at, task.processed_at, child_seconds)

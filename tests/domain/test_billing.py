from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from domain.billing import amount_to_charge, completed_child_seconds, task_cost
from domain.catalogue import DEFAULT_CATALOGUE, TaskType
from domain.errors import ValidationError
from domain.task import Task

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SEGMENT = DEFAULT_CATALOGUE["travel_segment"]
UPSCALE = DEFAULT_CATALOGUE["image_upscale"]


def after(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def with_factors(task_type: TaskType, **factors: Any) -> TaskType:
    return replace(task_type, cost_factors=factors)


def test_per_unit_billing_charges_the_unit_cost_whatever_the_time() -> None:
    assert task_cost(DEFAULT_CATALOGUE["character_animate"], {}, T0, after(500)) == Decimal("0.200")


def test_per_unit_billing_needs_no_timings() -> None:
    assert task_cost(DEFAULT_CATALOGUE["z_image_turbo"], {}, None, None) == Decimal("0.007")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0.028"), (0.4, "0.028"), (1, "0.028"), (1.2, "0.056"), (10, "0.278")],
)
def test_per_second_billing_rounds_up_and_charges_at_least_one_second(
    seconds: float, expected: str
) -> None:
    assert task_cost(SEGMENT, {}, T0, after(seconds)) == Decimal(expected)


def test_costs_are_rounded_to_three_decimals_half_up() -> None:
    assert task_cost(UPSCALE, {}, None, None) == Decimal("0.002")
    assert task_cost(DEFAULT_CATALOGUE["join_final_stitch"], {}, T0, after(1)) == Decimal("0.005")


def test_the_resolution_factor_multiplies_the_cost() -> None:
    task_type = with_factors(SEGMENT, resolution={"1280x720": 2, "640x360": 1})
    assert task_cost(task_type, {"resolution": "1280x720"}, T0, after(10)) == Decimal("0.556")


def test_a_resolution_without_a_factor_leaves_the_cost_alone() -> None:
    task_type = with_factors(SEGMENT, resolution={"1280x720": 2})
    assert task_cost(task_type, {"resolution": "4k"}, T0, after(10)) == Decimal("0.278")


def test_the_frame_count_factor_adds_per_frame_and_second_when_billed_per_second() -> None:
    task_type = with_factors(SEGMENT, frameCount=0.0001)
    # 0.0278 * 10 + 0.0001 * 81 * 10
    assert task_cost(task_type, {"frame_count": 81}, T0, after(10)) == Decimal("0.359")


def test_the_frame_count_factor_adds_per_frame_when_billed_per_unit() -> None:
    task_type = with_factors(DEFAULT_CATALOGUE["character_animate"], frameCount=0.001)
    assert task_cost(task_type, {"frame_count": 50}, None, None) == Decimal("0.250")


def test_the_model_type_factor_multiplies_after_the_frame_count_is_added() -> None:
    task_type = with_factors(
        DEFAULT_CATALOGUE["character_animate"], frameCount=0.001, modelType={"pro": 2}
    )
    assert task_cost(task_type, {"frame_count": 50, "model_type": "pro"}, None, None) == Decimal(
        "0.500"
    )


def test_an_orchestrator_is_billed_on_the_sum_of_its_childrens_seconds() -> None:
    orchestrator = DEFAULT_CATALOGUE["travel_orchestrator"]
    assert task_cost(orchestrator, {}, T0, after(3600), child_seconds=[4, 5, 1]) == Decimal("0.278")


def test_per_second_billing_without_its_timings_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"travel_segment.*start and its completion"):
        task_cost(SEGMENT, {}, T0, None)


def test_negative_child_seconds_are_refused() -> None:
    with pytest.raises(ValidationError, match="child seconds"):
        task_cost(SEGMENT, {}, None, None, child_seconds=[3, -1])


def run(
    task_type: str, params: dict[str, Any] | None = None, seconds: float = 3, end: str = "complete"
) -> Task:
    task = Task.create(
        project_id=uuid4(),
        owner_id="user-1",
        task_type=DEFAULT_CATALOGUE[task_type],
        params=params or {},
        at=T0,
    )
    task.claim("worker-1", T0)
    if end == "complete":
        task.complete("m.mp4", after(seconds))
    elif end == "fail":
        task.fail("boom", after(seconds))
    return task


def test_a_completed_task_is_charged_its_cost() -> None:
    assert amount_to_charge(run("travel_segment"), SEGMENT) == Decimal("0.083")


@pytest.mark.parametrize("end", ["fail", "running"])
def test_a_task_that_did_not_complete_is_charged_nothing(end: str) -> None:
    assert amount_to_charge(run("image_upscale", end=end), UPSCALE) == Decimal(0)


def test_a_child_of_an_orchestrator_is_not_charged_on_its_own() -> None:
    child = run("travel_segment", {"orchestrator_task_id_ref": str(uuid4())})
    assert amount_to_charge(child, SEGMENT) == Decimal(0)


def test_an_orchestrator_is_charged_for_its_completed_children_only() -> None:
    orchestrator = run("travel_orchestrator", seconds=900)
    children = [
        run("travel_segment", seconds=4),
        run("travel_segment", seconds=2.5),
        run("travel_segment", seconds=60, end="fail"),
    ]
    seconds = completed_child_seconds(children)
    assert seconds == [4, 3]
    assert amount_to_charge(
        orchestrator, DEFAULT_CATALOGUE["travel_orchestrator"], seconds
    ) == Decimal("0.195")


def test_an_orchestrator_charged_without_its_childrens_seconds_is_refused() -> None:
    with pytest.raises(ValidationError, match="children's seconds"):
        amount_to_charge(run("travel_orchestrator"), DEFAULT_CATALOGUE["travel_orchestrator"])

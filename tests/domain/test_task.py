from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.utils import get_topic, resolve_topic

from domain.catalogue import resolve_default
from domain.errors import (
    InvalidParamsError,
    InvalidTransitionError,
    TaskNotInProgressError,
    ValidationError,
)
from domain.task import (
    CANCELLED,
    COMPLETE,
    FAILED,
    IN_PROGRESS,
    MAX_ATTEMPTS,
    QUEUED,
    Task,
    billable_seconds,
)

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def new_task(
    task_type: str = "image_generation", params: dict[str, Any] | None = None, **kw: Any
) -> Task:
    return Task.create(
        project_id=uuid4(),
        owner_id="user-1",
        task_type=resolve_default(task_type),
        params=params or {"prompt": "a"},
        at=T0,
        **kw,
    )


def running_task(**kw: Any) -> Task:
    task = new_task(**kw)
    task.claim("worker-1", T0 + timedelta(seconds=1))
    return task


def event_types(task: Task) -> list[type]:
    return [type(e) for e in task.collect_events()]


def test_a_new_task_is_queued_with_no_attempts() -> None:
    task = new_task()
    assert (task.status, task.attempts, task.worker_id, task.created_at) == (QUEUED, 0, None, T0)
    assert event_types(task) == [Task.Created]


def test_a_task_takes_its_run_type_and_category_from_its_type() -> None:
    task = new_task("travel_orchestrator")
    assert (task.task_type, task.run_type, task.category) == (
        "travel_orchestrator",
        "gpu",
        "orchestration",
    )
    assert task.is_orchestrator


def test_a_task_can_be_given_its_id_and_idempotency_key() -> None:
    task_id = uuid4()
    task = new_task(task_id=task_id, idempotency_key="key-1")
    assert (task.id, task.idempotency_key) == (task_id, "key-1")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"model_name": "a", "orchestrator_details": {"model_name": "b"}, "model": "c"}, "a"),
        ({"orchestrator_details": {"model_name": "b"}, "model": "c"}, "b"),
        ({"model": "c"}, "c"),
        ({}, None),
    ],
)
def test_the_model_name_comes_from_model_name_then_orchestrator_details_then_model(
    params: dict[str, Any], expected: str | None
) -> None:
    assert new_task(params=params or {"prompt": "a"}).model_name == expected


def test_a_type_with_a_fixed_model_names_it_when_params_do_not() -> None:
    assert new_task("z_image_turbo").model_name == "z_image_turbo"


def test_orchestrator_links_are_read_from_params() -> None:
    orchestrator, parent, shot, source = uuid4(), uuid4(), uuid4(), uuid4()
    task = new_task(
        "travel_segment",
        {
            "orchestrator_task_id_ref": str(orchestrator),
            "segment_index": 2,
            "orchestrator_details": {
                "orchestrator_run_id": "run-7",
                "shot_id": str(shot),
                "parent_generation_id": str(parent),
            },
            "based_on": source,
        },
    )
    assert (task.orchestrator_task_id, task.run_id, task.segment_index) == (
        orchestrator,
        "run-7",
        2,
    )
    assert (task.parent_generation_id, task.shot_id, task.based_on) == (parent, shot, source)
    assert (task.join_index, task.child_order) == (None, None)


def test_a_malformed_id_in_params_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match=r"params\.shot_id.*'not-a-uuid'"):
        new_task(params={"shot_id": "not-a-uuid"})


def test_a_negative_segment_index_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="segment_index"):
        new_task("travel_segment", {"segment_index": -1})


def test_params_must_be_an_object() -> None:
    with pytest.raises(InvalidParamsError, match="params must be an object"):
        Task.create(
            project_id=uuid4(),
            owner_id="user-1",
            task_type=resolve_default("image_generation"),
            params=["prompt"],
            at=T0,
        )  # type: ignore[arg-type]


def test_a_task_cannot_depend_on_itself() -> None:
    task_id = uuid4()
    with pytest.raises(ValidationError, match="depend on itself"):
        new_task(task_id=task_id, dependant_on=[task_id])


def test_dependencies_are_kept_in_order_without_repeats() -> None:
    a, b = uuid4(), uuid4()
    assert new_task(dependant_on=[a, str(b), a]).dependant_on == [a, b]


def test_timestamps_must_be_timezone_aware() -> None:
    task = new_task()
    with pytest.raises(ValidationError, match="timezone-aware"):
        task.claim("worker-1", datetime(2026, 5, 1, 12, 0))


def test_claiming_a_queued_task_puts_it_in_progress_with_its_worker() -> None:
    task = new_task()
    task.claim("worker-1", T0 + timedelta(seconds=5))
    assert (task.status, task.worker_id, task.started_at) == (
        IN_PROGRESS,
        "worker-1",
        T0 + timedelta(seconds=5),
    )
    assert event_types(task) == [Task.Created, Task.Claimed]


def test_a_task_in_progress_cannot_be_claimed_again() -> None:
    task = running_task()
    with pytest.raises(InvalidTransitionError):
        task.claim("worker-2", T0)
    assert task.worker_id == "worker-1"


def test_a_queued_task_cannot_be_completed() -> None:
    task = new_task()
    with pytest.raises(InvalidTransitionError):
        task.complete("media/out.png", T0)
    assert task.status == QUEUED
    assert event_types(task) == [Task.Created]


def test_a_refused_transition_names_the_current_status_and_the_allowed_ones() -> None:
    task = new_task()
    with pytest.raises(InvalidTransitionError) as refused:
        task.complete("media/out.png", T0)
    assert refused.value.current_status == QUEUED
    assert refused.value.requested_status == COMPLETE
    assert refused.value.allowed_transitions == sorted([IN_PROGRESS, FAILED, CANCELLED])
    assert "'Queued'" in str(refused.value) and "Cancelled, Failed, In Progress" in str(
        refused.value
    )


def test_completing_a_running_task_records_its_output_and_processed_time() -> None:
    task = running_task()
    task.complete(
        "media/out.png",
        T0 + timedelta(seconds=9),
        thumbnail_url="media/t.png",
        result_data={"seed": 4},
    )
    assert (task.status, task.output_location, task.thumbnail_url, task.result_data) == (
        COMPLETE,
        "media/out.png",
        "media/t.png",
        {"seed": 4},
    )
    assert task.processed_at == T0 + timedelta(seconds=9)
    assert task.is_terminal
    assert event_types(task) == [Task.Created, Task.Claimed, Task.Completed]


def test_an_empty_output_location_is_refused() -> None:
    with pytest.raises(ValidationError, match="output_location"):
        running_task().complete("  ", T0)


@pytest.mark.parametrize("end", ["complete", "fail", "cancel"])
@pytest.mark.parametrize("action", ["claim", "complete", "fail", "cancel", "requeue"])
def test_a_finished_task_allows_no_transition(end: str, action: str) -> None:
    task = running_task()
    finish = {
        "complete": lambda: task.complete("m.png", T0),
        "fail": lambda: task.fail("x", T0),
        "cancel": lambda: task.cancel(T0),
    }
    finish[end]()
    status = task.status
    attempt = {
        "claim": lambda: task.claim("w", T0),
        "complete": lambda: task.complete("m", T0),
        "fail": lambda: task.fail("x", T0),
        "cancel": lambda: task.cancel(T0),
        "requeue": lambda: task.requeue("again", T0),
    }
    with pytest.raises(InvalidTransitionError) as refused:
        attempt[action]()
    assert refused.value.allowed_transitions == []
    assert task.status == status


def test_a_queued_task_can_fail() -> None:
    task = new_task()
    task.fail("dependency failed", T0)
    assert (task.status, task.error_message) == (FAILED, "dependency failed")
    assert event_types(task) == [Task.Created, Task.Failed]


def test_a_queued_task_can_be_cancelled() -> None:
    task = new_task()
    task.cancel(T0, reason="user asked")
    assert (task.status, task.error_message) == (CANCELLED, "user asked")
    assert event_types(task) == [Task.Created, Task.Cancelled]


def test_a_running_task_can_be_cancelled() -> None:
    task = running_task()
    task.cancel(T0)
    assert task.status == CANCELLED


def test_a_lost_worker_requeues_the_task_with_one_more_attempt() -> None:
    task = running_task()
    task.report_progress(1, 4)
    task.worker_lost(T0 + timedelta(minutes=1))
    assert (task.status, task.attempts, task.worker_id, task.started_at, task.progress) == (
        QUEUED,
        1,
        None,
        None,
        None,
    )
    assert task.error_message == "Requeued: worker crashed (attempt 1)"
    assert event_types(task) == [Task.Created, Task.Claimed, Task.ProgressReported, Task.Requeued]


def test_the_third_lost_worker_fails_the_task() -> None:
    task = new_task()
    for n in range(MAX_ATTEMPTS):
        task.claim(f"worker-{n}", T0)
        task.worker_lost(T0)
    assert (task.status, task.attempts) == (FAILED, 3)
    assert task.error_message == "Failed: worker crashed (attempt 3 of 3)"
    assert event_types(task) == [Task.Created] + [Task.Claimed, Task.Requeued] * 2 + [
        Task.Claimed,
        Task.Failed,
    ]


def test_requeueing_a_queued_task_is_refused() -> None:
    with pytest.raises(InvalidTransitionError):
        new_task().requeue("again", T0)


def test_releasing_a_task_returns_it_to_the_queue_without_spending_an_attempt() -> None:
    task = running_task()
    task.worker_lost(T0 + timedelta(seconds=2))
    task.claim("worker-2", T0 + timedelta(seconds=3))
    task.report_progress(2, 4)
    task.release("dispatcher shutting down", T0 + timedelta(seconds=4))
    assert (task.status, task.attempts, task.worker_id, task.started_at, task.progress) == (
        QUEUED,
        1,
        None,
        None,
        None,
    )
    assert task.error_message == "Released: dispatcher shutting down (not counted as an attempt)"
    assert event_types(task)[-1] is Task.Released


def test_a_task_released_at_every_restart_never_fails() -> None:
    task = new_task()
    for n in range(MAX_ATTEMPTS + 2):
        task.claim(f"worker-{n}", T0)
        task.release("shutdown", T0)
    assert (task.status, task.attempts) == (QUEUED, 0)
    task.claim("worker-last", T0)
    task.worker_lost(T0)
    assert (task.status, task.attempts) == (QUEUED, 1)


@pytest.mark.parametrize("end", ["queued", "complete", "fail", "cancel"])
def test_only_a_running_task_can_be_released(end: str) -> None:
    task = new_task() if end == "queued" else running_task()
    finish = {
        "queued": lambda: None,
        "complete": lambda: task.complete("m.png", T0),
        "fail": lambda: task.fail("x", T0),
        "cancel": lambda: task.cancel(T0),
    }
    finish[end]()
    status = task.status
    with pytest.raises(InvalidTransitionError) as refused:
        task.release("shutdown", T0)
    assert (
        refused.value.current_status == status and QUEUED not in refused.value.allowed_transitions
    )
    assert task.status == status


def test_progress_is_reported_only_while_in_progress() -> None:
    with pytest.raises(TaskNotInProgressError, match="'Queued'"):
        new_task().report_progress(1, 2)


def test_progress_is_recorded_as_step_and_total() -> None:
    task = running_task()
    task.report_progress(3, 8)
    assert task.progress == (3, 8)


@pytest.mark.parametrize(("step", "total"), [(3, 2), (-1, 2), (0, 0), (1.5, 2)])
def test_progress_step_must_lie_within_total(step: Any, total: Any) -> None:
    with pytest.raises(ValidationError, match="progress"):
        running_task().report_progress(step, total)


def test_resetting_the_start_moves_the_billed_start() -> None:
    task = running_task()
    task.reset_start(T0 + timedelta(seconds=30))
    task.complete("m.png", T0 + timedelta(seconds=40))
    assert task.billable_seconds() == 10


@pytest.mark.parametrize(
    ("start", "status", "expected"),
    [
        (QUEUED, IN_PROGRESS, IN_PROGRESS),
        (QUEUED, FAILED, FAILED),
        (QUEUED, CANCELLED, CANCELLED),
        (IN_PROGRESS, COMPLETE, COMPLETE),
        (IN_PROGRESS, FAILED, FAILED),
        (IN_PROGRESS, CANCELLED, CANCELLED),
        (IN_PROGRESS, QUEUED, QUEUED),
    ],
)
def test_set_status_follows_the_transition_table(start: str, status: str, expected: str) -> None:
    task = running_task() if start == IN_PROGRESS else new_task()
    task.set_status(status, "boom", at=T0, worker_id="worker-9", output_location="m.png")
    assert task.status == expected


@pytest.mark.parametrize(
    ("start", "status"), [(QUEUED, QUEUED), (QUEUED, COMPLETE), (IN_PROGRESS, IN_PROGRESS)]
)
def test_set_status_refuses_what_the_table_refuses(start: str, status: str) -> None:
    task = running_task() if start == IN_PROGRESS else new_task()
    with pytest.raises(InvalidTransitionError):
        task.set_status(status, at=T0, worker_id="worker-9", output_location="m.png")


def test_set_status_refuses_an_unknown_status() -> None:
    with pytest.raises(ValidationError, match="'Pending'"):
        new_task().set_status("Pending", at=T0)


def test_set_status_in_progress_needs_a_worker() -> None:
    with pytest.raises(ValidationError, match="worker id"):
        new_task().set_status(IN_PROGRESS, at=T0)


def test_set_status_failed_keeps_the_error() -> None:
    task = running_task()
    task.set_status(FAILED, "out of memory", at=T0)
    assert task.error_message == "out of memory"


def test_the_cost_of_a_completed_task_is_recorded_once() -> None:
    task = running_task()
    task.complete("m.png", T0)
    task.record_cost("0.039")
    task.record_cost("0.5")
    assert task.cost == Decimal("0.039")
    assert event_types(task) == [Task.Created, Task.Claimed, Task.Completed, Task.CostRecorded]


def test_a_task_that_did_not_complete_has_no_cost() -> None:
    task = running_task()
    task.fail("boom", T0)
    with pytest.raises(ValidationError, match="only a Complete task has a cost"):
        task.record_cost(1)
    assert task.cost is None


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0, 1), (0.2, 1), (1, 1), (1.001, 2), (59.5, 60)]
)
def test_billable_seconds_round_up_and_are_at_least_one(seconds: float, expected: int) -> None:
    assert billable_seconds(T0, T0 + timedelta(seconds=seconds)) == expected


def a_task_with_a_full_history() -> Task:
    task = new_task(
        "travel_segment",
        {
            "orchestrator_task_id_ref": str(uuid4()),
            "segment_index": 0,
            "nested": {"list": [1, None]},
        },
        dependant_on=[uuid4()],
    )
    task.claim("worker-1", T0)
    task.report_progress(1, 3)
    task.worker_lost(T0 + timedelta(seconds=2))
    task.claim("worker-2", T0 + timedelta(seconds=3))
    task.release("shutdown", T0 + timedelta(seconds=3))
    task.claim("worker-3", T0 + timedelta(seconds=3))
    task.reset_start(T0 + timedelta(seconds=4))
    task.complete("m.mp4", T0 + timedelta(seconds=9), result_data={"frames": 81})
    task.record_cost(Decimal("0.139"))
    return task


def test_a_task_replayed_from_its_events_equals_the_original() -> None:
    task = a_task_with_a_full_history()
    replayed = None
    for domain_event in task.collect_events():
        replayed = domain_event.mutate(replayed)
    assert isinstance(replayed, Task)
    assert vars(replayed) == vars(task)


def test_a_task_stored_and_loaded_by_an_application_equals_the_original() -> None:
    task = a_task_with_a_full_history()
    app: Application[UUID] = Application()
    app.save(task)
    loaded: Any = app.repository.get(task.id)
    assert vars(loaded) == vars(task)
    assert loaded.status == COMPLETE and loaded.cost == Decimal("0.139")


def test_every_task_event_has_a_fixed_topic() -> None:
    events = [
        Task.Created,
        Task.Claimed,
        Task.StartReset,
        Task.ProgressReported,
        Task.Completed,
        Task.Failed,
        Task.Cancelled,
        Task.Requeued,
        Task.Released,
        Task.CostRecorded,
    ]
    topics = [get_topic(e) for e in events]
    assert [resolve_topic(t) for t in topics] == events
    assert Task.TOPIC == "darkroom.task"
    assert all(t.startswith("darkroom.task.") for t in topics)
    assert "darkroom.task.created" in topics and "darkroom.task.claimed" in topics

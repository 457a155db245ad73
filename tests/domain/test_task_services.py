"""Task verbs against a real PostgreSQL event store: creation, claiming, liveness,
status changes and their cascades."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from domain.catalogue import TaskType
from domain.claiming import MAX_IN_PROGRESS_PER_OWNER
from domain.errors import (
    DependencyFailedError,
    GenerationNotFoundError,
    InsufficientCreditsError,
    InvalidParamsError,
    InvalidTransitionError,
    ProjectNotFoundError,
    ShotNotFoundError,
    TaskHeldElsewhereError,
    TaskNotClaimableError,
    TaskNotFoundError,
    UnknownTaskTypeError,
)
from domain.metadata import CommandMeta
from domain.studio import Studio
from domain.task import CANCELLED, FAILED, IN_PROGRESS, QUEUED, Task


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def funded(studio: Studio) -> tuple[str, str]:
    """A user with the welcome credits and a project."""
    owner = name("user")
    studio.ensure_user(owner)
    return owner, str(studio.create_project(owner, "Film")["project_id"])


def queue(
    studio: Studio, project_id: str, owner: str, task_type: str = "image_generation", **kw: Any
) -> str:
    params = kw.pop("params", {"prompt": "a lighthouse"})
    return str(studio.create_task(project_id, owner, task_type, params, **kw)["task_id"])


def task(studio: Studio, task_id: str) -> Task:
    found = studio.repository.get(uuid.UUID(task_id))
    assert isinstance(found, Task)
    return found


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Runs the calls on threads released at the same instant; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- creation -----------------------------------------------------------------
def test_a_new_task_is_queued_with_its_type_run_type_and_owner(studio: Studio) -> None:
    owner, project_id = funded(studio)
    created = studio.create_task(project_id, owner, "image_upscale", {"image": "/m/a.png"})
    made = task(studio, created["task_id"])
    assert (made.status, made.run_type, made.owner_id) == (QUEUED, "api", owner)
    assert created["status"] == QUEUED and created["position"] > 0


def test_a_repeated_idempotency_key_returns_the_first_task_and_stores_nothing(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    first = studio.create_task(project_id, owner, "image_generation", {}, idempotency_key="k")
    head = studio.head_position()
    again = studio.create_task(project_id, owner, "image_generation", {}, idempotency_key="k")
    assert again["task_id"] == first["task_id"] and again["replayed"]
    assert studio.head_position() == head
    assert task(studio, first["task_id"]).idempotency_key == "k"


def test_a_batch_is_one_save_with_a_key_per_item_and_may_chain_on_earlier_items(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    items = [
        {"task_type": "image_generation", "params": {"prompt": "one"}},
        {"task_type": "image_upscale", "params": {}, "dependant_on": [0]},
    ]
    made = studio.create_tasks(project_id, owner, items, idempotency_key="batch")
    first, second = (task(studio, t) for t in made["task_ids"])
    assert second.dependant_on == [first.id] and first.dependants == [second.id]
    assert [first.idempotency_key, second.idempotency_key] == ["batch:0", "batch:1"]
    assert {h["command_id"] for t in made["task_ids"] for h in studio.history(t)[:1]} == {
        studio.history(made["task_ids"][0])[0]["command_id"]
    }
    head = studio.head_position()
    assert (
        studio.create_tasks(project_id, owner, items, idempotency_key="batch")["task_ids"]
        == made["task_ids"]
    )
    assert studio.head_position() == head


def test_a_batch_item_whose_dependant_on_is_not_a_list_is_refused_by_name(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    head = studio.head_position()
    items = [{"task_type": "image_generation", "params": {}, "dependant_on": "0"}]
    with pytest.raises(InvalidParamsError, match="dependant_on must be a list"):
        studio.create_tasks(project_id, owner, items)
    assert studio.head_position() == head


def test_creating_a_task_on_a_failed_dependency_is_refused(studio: Studio) -> None:
    owner, project_id = funded(studio)
    dependency = queue(studio, project_id, owner)
    studio.fail_task(dependency, "boom")
    head = studio.head_position()
    with pytest.raises(DependencyFailedError):
        queue(studio, project_id, owner, dependant_on=[dependency])
    assert studio.head_position() == head


@pytest.mark.parametrize(
    "attempt",
    [
        lambda s, o, p: s.create_task(p, o, "teleport", {}),
        lambda s, o, p: s.create_task(p, "mallory", "image_generation", {}),
        lambda s, o, p: s.create_task(uuid.uuid4(), o, "image_generation", {}),
        lambda s, o, p: s.create_task(p, o, "image_generation", {}, dependant_on=[uuid.uuid4()]),
        lambda s, o, p: s.create_task(p, o, "image_generation", {}, dependant_on=["nope"]),
        lambda s, o, p: s.create_task(p, o, "image_upscale", {"based_on": str(uuid.uuid4())}),
        lambda s, o, p: s.create_task(p, o, "image_generation", {"shot_id": str(uuid.uuid4())}),
        lambda s, o, p: s.create_task(p, o, "travel_orchestrator", {}),
        lambda s, o, p: s.create_task(
            p, o, "travel_segment", {"orchestrator_task_id_ref": str(uuid.uuid4())}
        ),
        lambda s, o, p: s.create_task(p, o, "image_generation", []),
        lambda s, o, p: s.create_tasks(
            p,
            o,
            [
                {"task_type": "image_generation", "params": {}},
                {"task_type": "teleport", "params": {}},
            ],
        ),
        lambda s, o, p: s.create_travel(p, o, image_urls=["/m/only.png"]),
    ],
    ids=[
        "unknown type",
        "other user's project",
        "unknown project",
        "unknown dependency",
        "malformed dependency",
        "unknown source generation",
        "unknown shot",
        "orchestrator type",
        "orchestrator link",
        "params not an object",
        "one bad item of a batch",
        "travel over one image",
    ],
)
def test_bad_input_raises_a_named_error_and_stores_nothing(studio: Studio, attempt: Any) -> None:
    owner, project_id = funded(studio)
    head = studio.head_position()
    with pytest.raises(
        (
            UnknownTaskTypeError,
            ProjectNotFoundError,
            TaskNotFoundError,
            InvalidParamsError,
            GenerationNotFoundError,
            ShotNotFoundError,
        )
    ):
        attempt(studio, owner, project_id)
    assert studio.head_position() == head


def test_a_dependency_of_another_user_is_not_found(studio: Studio) -> None:
    owner, project_id = funded(studio)
    other, other_project = funded(studio)
    theirs = queue(studio, other_project, other)
    with pytest.raises(TaskNotFoundError):
        queue(studio, project_id, owner, dependant_on=[theirs])


def test_a_registered_type_can_be_queued_until_it_is_deactivated(studio: Studio) -> None:
    owner, project_id = funded(studio)
    kind = name("sketch").replace("-", "_")
    studio.register_task_type(TaskType(kind, "api", "generation", "per_unit", unit_cost="0.01"))
    assert kind in {t.name for t in studio.task_types()}
    queue(studio, project_id, owner, kind)
    studio.deactivate_task_type(kind)
    with pytest.raises(UnknownTaskTypeError):
        queue(studio, project_id, owner, kind)


# -- claiming -------------------------------------------------------------------
def test_only_one_of_two_concurrent_workers_claims_a_task(studio: Studio) -> None:
    owner, project_id = funded(studio)
    for _ in range(4):
        task_id = queue(studio, project_id, owner)
        first, second = name("w"), name("w")
        results = together(
            partial(studio.claim_next, first, "api", None, [task_id]),
            partial(studio.claim_next, second, "api", None, [task_id]),
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1 and winners[0]["task_id"] == task_id
        assert task(studio, task_id).worker_id in (first, second)
        studio.complete_task(task_id, "/m/out.png")


def test_an_owner_never_has_more_than_five_tasks_in_progress(studio: Studio) -> None:
    owner, project_id = funded(studio)
    ids = [queue(studio, project_id, owner) for _ in range(8)]
    results = together(*[partial(studio.claim_next, name("w"), "api", None, ids) for _ in range(8)])
    running = [t for t in ids if task(studio, t).status == IN_PROGRESS]
    assert len(running) == len([r for r in results if r]) <= MAX_IN_PROGRESS_PER_OWNER
    while studio.claim_next(name("w"), "api", None, ids):
        pass
    running = [t for t in ids if task(studio, t).status == IN_PROGRESS]
    assert len(running) == MAX_IN_PROGRESS_PER_OWNER
    waiting = next(t for t in ids if t not in running)
    with pytest.raises(TaskNotClaimableError):
        studio.claim_task(waiting, name("w"))
    studio.complete_task(running[0], "/m/out.png")
    assert studio.claim_next(name("w"), "api", None, ids) is not None


def test_a_task_whose_dependency_is_not_complete_is_not_claimed(studio: Studio) -> None:
    owner, project_id = funded(studio)
    first = queue(studio, project_id, owner)
    second = queue(studio, project_id, owner, "image_upscale", dependant_on=[first])
    assert studio.claim_next(name("w"), "api", None, [second]) is None
    with pytest.raises(TaskNotClaimableError):
        studio.claim_task(second, name("w"))
    studio.claim_task(first, name("w"))
    studio.complete_task(first, "/m/first.png")
    assert studio.claim_next(name("w"), "api", None, [second])["task_id"] == second


def test_a_user_without_credits_gets_nothing_to_claim(studio: Studio) -> None:
    owner = name("broke")  # never registered: no ledger, no credits
    project_id = studio.create_project(owner, "Film")["project_id"]
    task_id = queue(studio, project_id, owner)
    assert studio.claim_next(name("w"), "api", None, [task_id]) is None
    with pytest.raises(InsufficientCreditsError):
        studio.claim_task(task_id, name("w"))
    assert task(studio, task_id).status == QUEUED


def test_a_worker_gets_nothing_of_another_run_type(studio: Studio) -> None:
    owner, project_id = funded(studio)
    task_id = queue(studio, project_id, owner)
    assert studio.claim_next(name("w"), "gpu", None, [task_id]) is None


def test_claiming_prefers_the_loaded_model_unless_a_task_waited_over_five_minutes(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    older = queue(studio, project_id, owner, params={"model_name": "flux"})
    newer = queue(studio, project_id, owner, params={"model_name": "qwen"})
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert studio.claim_next(name("w"), "api", "qwen", [older, newer])["task_id"] == newer
    studio.requeue_task(newer)
    assert (
        studio.claim_next(name("w"), "api", "qwen", [older, newer], now=later)["task_id"] == older
    )


# -- liveness -----------------------------------------------------------------------
def test_a_lost_worker_requeues_its_tasks_and_the_third_loss_fails_them(studio: Studio) -> None:
    owner, project_id = funded(studio)
    task_id = queue(studio, project_id, owner)
    seen = []
    for _ in range(3):
        worker = name("w")
        studio.claim_task(task_id, worker)
        swept = studio.sweep_lost_workers(datetime.now(UTC) + timedelta(minutes=3))
        assert worker in swept["lost_workers"]
        seen.append((task(studio, task_id).status, task(studio, task_id).attempts))
    assert seen == [(QUEUED, 1), (QUEUED, 2), (FAILED, 3)]
    assert "attempt 3" in (task(studio, task_id).error_message or "")


def test_a_heartbeating_worker_keeps_its_tasks(studio: Studio) -> None:
    a_heartbeat_keeps_tasks(studio, sweeper=studio)


def a_heartbeat_keeps_tasks(studio: Studio, sweeper: Studio) -> None:
    """A worker that heartbeats keeps its task through a sweep; a silent one loses it."""
    owner, project_id = funded(studio)
    alive, silent = name("w"), name("w")
    kept, lost = queue(studio, project_id, owner), queue(studio, project_id, owner)
    start = datetime.now(UTC)
    studio.claim_task(kept, alive, now=start)
    studio.claim_task(lost, silent, now=start)
    studio.heartbeat(alive, [kept], now=start + timedelta(seconds=100))
    swept = sweeper.sweep_lost_workers(start + timedelta(seconds=150))
    assert alive not in swept["lost_workers"] and silent in swept["lost_workers"]
    assert (task(studio, kept).status, task(studio, lost).status) == (IN_PROGRESS, QUEUED)


def test_a_heartbeat_tells_the_worker_to_stop_a_cancelled_task(studio: Studio) -> None:
    owner, project_id = funded(studio)
    worker = name("w")
    task_id = queue(studio, project_id, owner)
    studio.claim_task(task_id, worker)
    assert studio.heartbeat(worker, [task_id])["stop"] == []
    studio.cancel_task(task_id, owner)
    assert studio.heartbeat(worker, [task_id])["stop"] == [task_id]


def test_a_worker_that_lost_its_task_cannot_finish_it(studio: Studio) -> None:
    owner, project_id = funded(studio)
    first, second = name("w"), name("w")
    task_id = queue(studio, project_id, owner)
    studio.claim_task(task_id, first)
    studio.requeue_task(task_id, "worker restarted")
    studio.claim_task(task_id, second)
    head = studio.head_position()
    with pytest.raises(TaskHeldElsewhereError):
        studio.complete_task(task_id, "/m/late.png", worker_id=first)
    assert studio.head_position() == head


def test_a_worker_shutting_down_releases_its_task_without_spending_an_attempt(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    leaving, other = name("w"), name("w")
    task_id = queue(studio, project_id, owner)
    studio.claim_task(task_id, leaving)
    with pytest.raises(TaskHeldElsewhereError):
        studio.release_task(task_id, "shutdown", worker_id=other)
    released = studio.release_task(task_id, "shutdown", worker_id=leaving)
    assert released["status"] == QUEUED and released["changed"] == {task_id: QUEUED}
    assert (task(studio, task_id).status, task(studio, task_id).attempts) == (QUEUED, 0)
    assert studio.heartbeat(leaving, [task_id])["stop"] == [task_id]
    head = studio.head_position()
    with pytest.raises(InvalidTransitionError):
        studio.release_task(task_id, "shutdown", worker_id=leaving)
    assert studio.head_position() == head
    assert studio.claim_task(task_id, other)["attempts"] == 0


# -- status changes -------------------------------------------------------------------
def test_a_refused_transition_stores_nothing(studio: Studio) -> None:
    owner, project_id = funded(studio)
    task_id = queue(studio, project_id, owner)
    head = studio.head_position()
    with pytest.raises(InvalidTransitionError) as refused:
        studio.update_status(task_id, "Complete", output_location="/m/x.png")
    assert refused.value.current_status == QUEUED
    assert refused.value.allowed_transitions == [CANCELLED, FAILED, IN_PROGRESS]
    with pytest.raises(InvalidTransitionError):
        studio.requeue_task(task_id)
    assert studio.head_position() == head


def test_the_generic_status_update_claims_requeues_and_fails(studio: Studio) -> None:
    owner, project_id = funded(studio)
    worker = name("w")
    task_id = queue(studio, project_id, owner)
    studio.update_status(task_id, IN_PROGRESS, worker_id=worker)
    studio.report_progress(task_id, 3, 10, worker_id=worker)
    assert task(studio, task_id).progress == (3, 10)
    studio.update_status(task_id, QUEUED, "GPU out of memory", worker_id=worker)
    assert (task(studio, task_id).status, task(studio, task_id).attempts) == (QUEUED, 1)
    studio.update_status(task_id, FAILED, "bad prompt")
    assert task(studio, task_id).error_message == "bad prompt"


def test_a_queued_task_whose_dependency_failed_becomes_failed(studio: Studio) -> None:
    owner, project_id = funded(studio)
    first = queue(studio, project_id, owner)
    second = queue(studio, project_id, owner, dependant_on=[first])
    third = queue(studio, project_id, owner, dependant_on=[second])
    result = studio.fail_task(first, "model crashed")
    assert result["changed"] == {first: FAILED, second: FAILED, third: FAILED}


def test_the_blocked_task_sweep_fails_what_is_still_waiting_on_a_failure(studio: Studio) -> None:
    owner, project_id = funded(studio)
    dependency = queue(studio, project_id, owner)
    kind = studio.task_types()[0]
    blocked = Task.create(
        project_id=uuid.UUID(project_id),
        owner_id=owner,
        task_type=kind,
        params={},
        at=datetime.now(UTC),
        dependant_on=[uuid.UUID(dependency)],
    )
    studio.save(blocked)  # made behind the services' back: no cascade link
    studio.fail_task(dependency, "boom")
    assert task(studio, str(blocked.id)).status == QUEUED
    swept = studio.fail_blocked_tasks([blocked.id, dependency])
    assert swept["changed"] == {str(blocked.id): FAILED}


def test_cancel_pending_cancels_the_queued_tasks_of_that_project_only(studio: Studio) -> None:
    owner, project_id = funded(studio)
    other_project = studio.create_project(owner, "Other")["project_id"]
    queued = [queue(studio, project_id, owner) for _ in range(2)]
    running = queue(studio, project_id, owner)
    elsewhere = queue(studio, other_project, owner)
    studio.claim_task(running, name("w"))
    assert studio.cancel_pending(project_id, owner)["cancelled"] == 2
    assert [task(studio, t).status for t in [*queued, running, elsewhere]] == [
        CANCELLED,
        CANCELLED,
        IN_PROGRESS,
        QUEUED,
    ]
    with pytest.raises(ProjectNotFoundError):
        studio.cancel_pending(project_id, "mallory")


def test_another_users_task_cannot_be_cancelled(studio: Studio) -> None:
    owner, project_id = funded(studio)
    task_id = queue(studio, project_id, owner)
    with pytest.raises(TaskNotFoundError):
        studio.cancel_task(task_id, "mallory")
    assert task(studio, task_id).status == QUEUED


def test_worker_commands_carry_the_worker_as_actor(studio: Studio) -> None:
    owner, project_id = funded(studio)
    worker = name("w")
    task_id = queue(studio, project_id, owner)
    studio.claim_task(task_id, worker)
    studio.fail_task(
        task_id, "boom", worker_id=worker, meta=CommandMeta.for_worker(worker, correlation_id="c-1")
    )
    actors = [(h["actor"], h["correlation_id"]) for h in studio.history(task_id)]
    assert actors[0][0] == f"user:{owner}"
    assert actors[-1] == (f"worker:{worker}", "c-1")

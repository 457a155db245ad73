from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.catalogue import DEFAULT_CATALOGUE
from domain.claiming import (
    Candidate,
    cascade_targets,
    dependency_failed,
    eligible,
    ineligibility,
    next_for_worker,
    orchestrator_outcome,
    order_for_worker,
    running_counts,
)
from domain.task import CANCELLED, COMPLETE, FAILED, IN_PROGRESS, QUEUED, Task

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
RICH = {"user-1": Decimal("5")}


def candidate(minutes_ago: float = 1, model: str | None = None, **kw: Any) -> Candidate:
    fields: dict[str, Any] = {
        "task_id": uuid4(),
        "owner_id": "user-1",
        "run_type": "gpu",
        "model_name": model,
        "created_at": NOW - timedelta(minutes=minutes_ago),
    }
    return Candidate(**(fields | kw))


def check(
    c: Candidate,
    run_type: str = "gpu",
    balances: dict[str, Decimal] | None = None,
    in_progress: dict[str, int] | None = None,
) -> str | None:
    return ineligibility(
        c,
        run_type=run_type,
        balances=RICH if balances is None else balances,
        in_progress=in_progress or {},
    )


def test_a_queued_task_with_complete_dependencies_and_credit_is_eligible() -> None:
    c = candidate(dependency_statuses=(COMPLETE, COMPLETE))
    assert check(c) is None
    assert eligible(c, run_type="gpu", balances=RICH, in_progress={"user-1": 4})


@pytest.mark.parametrize(
    ("change", "context", "reason"),
    [
        ({"status": IN_PROGRESS}, {}, "'In Progress', not 'Queued'"),
        ({"run_type": "api"}, {}, "runs on 'api' workers"),
        ({"dependency_statuses": (COMPLETE, QUEUED)}, {}, "1 of its dependencies"),
        ({"dependency_statuses": ("Unknown",)}, {}, "dependencies are not Complete"),
        ({}, {"balances": {"user-1": Decimal(0)}}, "balance is 0"),
        ({}, {"balances": {}}, "balance is 0"),
        ({}, {"in_progress": {"user-1": 5}}, "already runs 5 tasks"),
    ],
)
def test_a_task_is_not_eligible_when_a_rule_refuses_it(
    change: dict[str, Any], context: dict[str, Any], reason: str
) -> None:
    c = replace(candidate(), **change)
    found = check(c, **context)
    assert found is not None and reason in found
    assert not eligible(
        c,
        run_type="gpu",
        balances=context.get("balances", RICH),
        in_progress=context.get("in_progress", {}),
    )


def task(type_name: str = "travel_segment", owner: str = "user-1", **params: Any) -> Task:
    return Task.create(
        project_id=uuid4(),
        owner_id=owner,
        task_type=DEFAULT_CATALOGUE[type_name],
        params=params,
        at=NOW,
    )


def test_running_counts_leave_out_orchestrators_and_other_statuses() -> None:
    running = [task(), task(), task("travel_orchestrator"), task(owner="user-2")]
    for t in running:
        t.claim("worker-1", NOW)
    assert running_counts([*running, task()]) == {"user-1": 2, "user-2": 1}


def test_a_candidate_snapshots_a_task_and_its_dependency_statuses() -> None:
    dep, missing = uuid4(), uuid4()
    t = Task.create(
        project_id=uuid4(),
        owner_id="user-1",
        task_type=DEFAULT_CATALOGUE["travel_stitch"],
        params={"model": "wan"},
        at=NOW,
        dependant_on=[dep, missing],
    )
    c = Candidate.of(t, {dep: COMPLETE})
    assert (c.task_id, c.run_type, c.model_name, c.category, c.status) == (
        t.id,
        "gpu",
        "wan",
        "processing",
        QUEUED,
    )
    assert c.dependency_statuses == (COMPLETE, "Unknown")


def test_tasks_of_the_loaded_model_go_first_then_oldest() -> None:
    old_other = candidate(4, "flux")
    new_same = candidate(1, "wan")
    old_same = candidate(3, "wan")
    newest_other = candidate(0.5, None)
    ordered = order_for_worker([newest_other, old_other, new_same, old_same], "wan", NOW)
    assert ordered == [old_same, new_same, old_other, newest_other]


def test_a_worker_with_no_model_takes_the_oldest_first() -> None:
    a, b, c = candidate(1, "wan"), candidate(3, "flux"), candidate(2, None)
    assert order_for_worker([a, b, c], None, NOW) == [b, c, a]


def test_a_task_waiting_over_five_minutes_goes_first_regardless_of_model() -> None:
    same_model = candidate(4.9, "wan")
    starving = candidate(5.5, "flux")
    more_starving = candidate(9, None)
    ordered = order_for_worker([same_model, starving, more_starving], "wan", NOW)
    assert ordered == [more_starving, starving, same_model]


def test_next_for_worker_skips_what_it_may_not_claim() -> None:
    other_owner = candidate(9, "wan", owner_id="user-2")
    blocked = candidate(8, "wan", dependency_statuses=(QUEUED,))
    api = candidate(7, run_type="api")
    fine = candidate(1, "flux")
    chosen = next_for_worker(
        [other_owner, blocked, api, fine],
        run_type="gpu",
        worker_model="wan",
        now=NOW,
        balances=RICH,
        in_progress={},
    )
    assert chosen == fine
    assert (
        next_for_worker(
            [blocked], run_type="gpu", worker_model=None, now=NOW, balances=RICH, in_progress={}
        )
        is None
    )


@dataclass
class Snapshot:
    status: str
    dependant_on: list[UUID] = field(default_factory=list)
    id: UUID = field(default_factory=uuid4)
    orchestrator_task_id: UUID | None = None


@pytest.mark.parametrize(
    ("own", "dependency", "expected"),
    [
        (QUEUED, FAILED, True),
        (QUEUED, CANCELLED, True),
        (QUEUED, COMPLETE, False),
        (QUEUED, IN_PROGRESS, False),
        (IN_PROGRESS, FAILED, False),
        (FAILED, FAILED, False),
    ],
)
def test_a_queued_task_whose_dependency_failed_or_was_cancelled_must_fail(
    own: str, dependency: str, expected: bool
) -> None:
    dep, fine = uuid4(), uuid4()
    snapshot = Snapshot(own, [fine, dep])
    assert dependency_failed(snapshot, {fine: COMPLETE, dep: dependency}) is expected


def family() -> tuple[Snapshot, list[Snapshot]]:
    root = Snapshot(IN_PROGRESS)
    children = [
        Snapshot(COMPLETE, orchestrator_task_id=root.id),
        Snapshot(IN_PROGRESS, orchestrator_task_id=root.id),
        Snapshot(QUEUED, orchestrator_task_id=root.id),
        Snapshot(QUEUED, orchestrator_task_id=root.id),
    ]
    return root, children


def test_a_failed_child_takes_down_its_orchestrator_and_unfinished_siblings() -> None:
    root, children = family()
    failed = children[1]
    outsider = Snapshot(QUEUED)
    targets = cascade_targets([root, *children, outsider], failed.id)
    assert targets == [root.id, children[2].id, children[3].id]


def test_a_failed_orchestrator_takes_down_its_unfinished_children() -> None:
    root, children = family()
    assert cascade_targets([root, *children], root.id) == [c.id for c in children[1:]]


def test_a_task_outside_any_family_takes_nobody_down() -> None:
    loner = Snapshot(FAILED)
    assert cascade_targets([loner, Snapshot(QUEUED)], loner.id) == []
    assert cascade_targets([loner], uuid4()) == []


def statuses(*values: str) -> list[Snapshot]:
    return [Snapshot(v) for v in values]


@pytest.mark.parametrize(
    ("children", "expected", "outcome"),
    [
        (statuses(COMPLETE, COMPLETE, COMPLETE), None, (COMPLETE, None)),
        (statuses(COMPLETE, FAILED, QUEUED), None, (FAILED, "1 of 3 segments failed")),
        (statuses(FAILED, CANCELLED), 3, (FAILED, "2 of 3 segments failed")),
        (statuses(COMPLETE, COMPLETE), 3, (FAILED, "1 of 3 segments failed")),
        (statuses(COMPLETE, IN_PROGRESS), None, None),
        ([], 3, None),
    ],
)
def test_an_orchestrator_follows_its_children(
    children: list[Snapshot], expected: int | None, outcome: tuple[str, str | None] | None
) -> None:
    assert orchestrator_outcome(children, expected) == outcome

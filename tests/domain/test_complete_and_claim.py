"""A worker's completion and its next claim in one save, decided on cached aggregates
that are checked (by the save's version check, or one query) instead of fast-forwarded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.credits import CreditLedger
from domain.errors import InvalidTransitionError, ValidationError
from domain.services.cached import CachedBatch
from domain.studio import Studio
from domain.task import CANCELLED, COMPLETE, IN_PROGRESS, QUEUED
from domain.tasktype import TaskType
from domain.worker import LOST_AFTER, Worker
from domain.workload import MAX_IN_PROGRESS_PER_OWNER, Workload
from tests.domain.test_task_services import funded, name, queue, task


@pytest.fixture(scope="module")
def elsewhere(database: Database, schema: str) -> Iterator[Studio]:
    """Another process on the same log: its writes are not in the first one's cache."""
    app = build_studio(database, schema, pool_size=2)
    yield app
    app.close()


def chained(studio: Studio, task_id: str, worker: str, *candidates: str, **kw: Any) -> Any:
    return studio.complete_and_claim(
        task_id,
        f"/m/{task_id}.png",
        worker_id=worker,
        run_type="api",
        current_model=None,
        candidate_ids=candidates,
        **kw,
    )


def current_in_cache(studio: Studio, owner: str, worker: str, *task_ids: str) -> None:
    """Loads (so caches, fast-forwarded) what a completion by `worker` changes."""
    for ident in (Worker.id_for(worker), Workload.id_for(owner), CreditLedger.id_for(owner)):
        studio.repository.get(ident)
    for ident in task_ids:
        task(studio, ident)


def holding_one_with_one_queued(studio: Studio) -> tuple[str, str, str, str]:
    """A worker that completed a task and claimed the next (so cached here as In
    Progress), and a third task Queued: owner, worker, the held task, the queued one."""
    owner, project_id = funded(studio)
    first, second, third = (queue(studio, project_id, owner) for _ in range(3))
    worker = name("w")
    studio.claim_task(first, worker)
    assert chained(studio, first, worker, second)["claimed"]["task_id"] == second
    return owner, worker, second, third


def held_by(studio: Studio, worker: str) -> set[str]:
    found = studio.repository.get(Worker.id_for(worker))
    assert isinstance(found, Worker)
    return {str(t) for t in found.running}


def test_a_completion_and_the_next_claim_are_one_save(studio: Studio) -> None:
    owner, project_id = funded(studio)
    first, second = queue(studio, project_id, owner), queue(studio, project_id, owner)
    worker = name("w")
    studio.claim_task(first, worker)
    before = studio.ledger(owner).balance
    head = studio.head_position()
    done = chained(studio, first, worker, second)
    assert done["status"] == COMPLETE and done["cost"] == "0.039"
    assert (
        done["claimed"]["task_id"] == second and done["claimed"]["task_type"] == "image_generation"
    )
    assert done["changed"] == {first: COMPLETE, second: IN_PROGRESS}
    assert task(studio, second).worker_id == worker and held_by(studio, worker) == {second}
    assert studio.ledger(owner).balance == before - Decimal("0.039")
    # one save: every event of both at positions after head, the last one answered
    assert done["position"] > head and studio.head_position() == done["position"]


def test_the_next_completion_is_decided_on_the_cache_and_charges_once(studio: Studio) -> None:
    owner, project_id = funded(studio)
    ids = [queue(studio, project_id, owner) for _ in range(4)]
    worker = name("w")
    studio.claim_task(ids[0], worker)
    before = studio.ledger(owner).balance
    for current, following in zip(ids, [*ids[1:], None], strict=True):
        done = chained(studio, current, worker, *([following] if following else []))
        assert done["status"] == COMPLETE
        assert (done["claimed"] or {}).get("task_id") == following
    assert [task(studio, t).status for t in ids] == [COMPLETE] * 4
    assert studio.ledger(owner).balance == before - 4 * Decimal("0.039")
    assert held_by(studio, worker) == set()
    with pytest.raises(InvalidTransitionError):  # charged once: a second completion is refused
        chained(studio, ids[-1], worker)


def test_a_claim_nobody_may_make_leaves_the_completion_to_be_saved_alone(studio: Studio) -> None:
    owner, project_id = funded(studio)
    first, other = queue(studio, project_id, owner), queue(studio, project_id, owner)
    worker = name("w")
    studio.claim_task(first, worker)
    studio.claim_task(other, name("w"))  # held elsewhere: not claimable
    done = chained(studio, first, worker, other)
    assert done["status"] == COMPLETE and done["claimed"] is None
    assert task(studio, other).worker_id != worker and held_by(studio, worker) == set()


def test_a_refused_completion_claims_nothing_and_writes_nothing(studio: Studio) -> None:
    owner, project_id = funded(studio)
    first, second = queue(studio, project_id, owner), queue(studio, project_id, owner)
    worker = name("w")
    studio.claim_task(first, worker)
    studio.cancel_task(first, owner)
    head = studio.head_position()
    with pytest.raises(InvalidTransitionError) as refused:
        chained(studio, first, worker, second)
    assert refused.value.current_status == CANCELLED
    assert studio.head_position() == head and task(studio, second).status == QUEUED


def test_a_completion_without_output_is_refused_as_complete_task_refuses_it(studio: Studio) -> None:
    owner, project_id = funded(studio)
    first, second = queue(studio, project_id, owner), queue(studio, project_id, owner)
    worker = name("w")
    studio.claim_task(first, worker)
    head = studio.head_position()
    with pytest.raises(ValidationError):
        studio.complete_and_claim(
            first,
            None,
            worker_id=worker,
            run_type="api",
            current_model=None,
            candidate_ids=[second],
        )
    assert studio.head_position() == head and task(studio, second).status == QUEUED


def test_the_completion_frees_its_owners_slot_for_the_claim_in_the_same_save(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    running = [queue(studio, project_id, owner) for _ in range(MAX_IN_PROGRESS_PER_OWNER)]
    waiting = queue(studio, project_id, owner)
    worker = name("w")
    for ident in running:
        studio.claim_task(ident, worker)
    assert studio.claim_next(name("w"), "api", None, [waiting]) is None  # at the limit
    done = chained(studio, running[0], worker, waiting)
    assert done["claimed"]["task_id"] == waiting
    workload = studio.repository.get(Workload.id_for(owner))
    assert isinstance(workload, Workload) and workload.running == MAX_IN_PROGRESS_PER_OWNER


def test_a_task_changed_by_another_process_is_never_completed_from_the_cache(
    studio: Studio, elsewhere: Studio
) -> None:
    owner, worker, second, third = holding_one_with_one_queued(studio)
    elsewhere.cancel_task(second, owner)
    head = studio.head_position()
    with pytest.raises(InvalidTransitionError) as refused:
        chained(studio, second, worker, third)
    assert refused.value.current_status == CANCELLED
    assert studio.head_position() == head and task(studio, third).status == QUEUED


def test_a_worker_swept_by_another_process_loses_its_task_whatever_the_cache_says(
    studio: Studio, elsewhere: Studio
) -> None:
    _, worker, second, third = holding_one_with_one_queued(studio)
    started = task(studio, second).started_at
    assert started is not None
    later = started + LOST_AFTER * 3
    assert worker in elsewhere.sweep_lost_workers(now=later)["lost_workers"]
    with pytest.raises(InvalidTransitionError):  # requeued: Queued again, not ours
        chained(studio, second, worker, third)
    assert task(studio, second).status == QUEUED and task(studio, third).status == QUEUED


def test_a_read_that_another_process_made_stale_is_decided_again_on_fresh_loads(
    studio: Studio, elsewhere: Studio
) -> None:
    owner, project_id = funded(studio)
    mine = queue(studio, project_id, owner)
    busy, project_b = funded(studio)
    theirs = [queue(studio, project_b, busy) for _ in range(MAX_IN_PROGRESS_PER_OWNER)]
    waiting = queue(studio, project_b, busy)
    worker = name("w")
    studio.claim_task(mine, worker)
    for ident in theirs:  # this process caches the busy owner's workload at the limit
        studio.claim_task(ident, name("other"))
    assert studio.claim_next(name("w"), "api", None, [waiting]) is None
    holder = task(studio, theirs[0]).worker_id
    current_in_cache(studio, owner, worker, mine)  # so only the busy owner's read is stale
    elsewhere.complete_task(theirs[0], "/m/x.png", worker_id=holder)  # a slot frees there
    done = chained(studio, mine, worker, waiting)
    assert done["claimed"]["task_id"] == waiting  # the cached "at the limit" was not believed


def test_a_cached_batch_reads_what_this_process_saved_without_asking_the_log(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    first, second = queue(studio, project_id, owner), queue(studio, project_id, owner)
    worker = name("w")
    studio.claim_task(first, worker)
    chained(studio, first, worker, second)
    batch = CachedBatch(studio.repository, task(studio, second).created_at)
    found = batch.find(Worker.id_for(worker))
    assert isinstance(found, Worker) and {str(t) for t in found.running} == {second}
    assert not batch.moved_on()


def test_a_refusal_read_from_a_stale_copy_is_decided_again_on_fresh_loads(
    studio: Studio, elsewhere: Studio
) -> None:
    owner, project_id = funded(studio)
    ident = queue(studio, project_id, owner)
    assert task(studio, ident).status == QUEUED  # cached here as Queued
    worker = name("w")
    elsewhere.claim_task(ident, worker)
    assert chained(studio, ident, worker)["status"] == COMPLETE


def test_warming_candidates_lets_the_next_claim_read_them_from_the_cache(studio: Studio) -> None:
    owner, project_id = funded(studio)
    ident = queue(studio, project_id, owner)
    peek = studio.repository.peek  # type: ignore[attr-defined]
    assert peek(uuid.UUID(ident)) is None  # creating a task does not cache it
    studio.warm([ident, str(uuid.uuid4())])  # an id that is no aggregate is passed over
    assert peek(uuid.UUID(ident)) is not None
    batch = CachedBatch(studio.repository, datetime.now(UTC))
    assert batch.find(ident) is not None and batch.moved_on() is False


def test_claim_next_never_takes_a_task_another_process_claimed_while_it_was_cached(
    studio: Studio, elsewhere: Studio
) -> None:
    owner, project_id = funded(studio)
    ident = queue(studio, project_id, owner)
    assert task(studio, ident).status == QUEUED  # cached here as Queued
    elsewhere.claim_task(ident, "elsewhere-worker")
    head = studio.head_position()
    assert studio.claim_next(name("w"), "api", None, [ident]) is None
    assert task(studio, ident).worker_id == "elsewhere-worker"
    assert studio.head_position() == head


def test_claim_next_does_not_believe_a_cached_owner_at_the_limit(
    studio: Studio, elsewhere: Studio
) -> None:
    busy, project_id = funded(studio)
    running = [queue(studio, project_id, busy) for _ in range(MAX_IN_PROGRESS_PER_OWNER)]
    waiting = queue(studio, project_id, busy)
    for ident in running:
        studio.claim_task(ident, name("other"))
    assert studio.claim_next(name("w"), "api", None, [waiting]) is None  # cached at the limit
    holder = task(studio, running[0]).worker_id
    elsewhere.complete_task(running[0], "/m/x.png", worker_id=holder)
    claimed = studio.claim_next(name("w"), "api", None, [waiting])
    assert claimed is not None and claimed["task_id"] == waiting


def test_a_catalogue_created_since_it_was_found_absent_prices_the_completion(
    studio: Studio, elsewhere: Studio
) -> None:
    _, worker, second, _ = holding_one_with_one_queued(studio)
    chained(studio, second, worker)  # this process has looked for the catalogue: none
    kind = name("poster").replace("-", "_")
    elsewhere.register_task_type(TaskType(kind, "api", "generation", "per_unit", unit_cost="0.01"))
    owner, project_id = funded(elsewhere)
    ident = queue(elsewhere, project_id, owner, task_type=kind)
    other = name("w")  # nothing of this task's but the catalogue was read here before
    elsewhere.claim_task(ident, other)
    assert Decimal(chained(studio, ident, other)["cost"]) == Decimal("0.01")

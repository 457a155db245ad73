"""A claim whose answer never reached its worker (the call timed out, the connection
dropped, the dispatcher died between the commit and the reply): the worker keeps
heartbeating without it, and a heartbeat that lists every task the worker holds
(`exhaustive`) puts it back in the queue once it was taken `UNLISTED_AFTER` ago."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.errors import InvalidTransitionError
from domain.studio import Studio
from domain.task import COMPLETE, IN_PROGRESS, QUEUED
from domain.worker import LOST_AFTER, UNLISTED_AFTER
from tests.domain.test_complete_and_claim import chained, held_by
from tests.domain.test_task_services import funded, name, queue, task


@pytest.fixture(scope="module")
def elsewhere(database: Database, schema: str) -> Iterator[Studio]:
    """Another process on the same log."""
    app = build_studio(database, schema, pool_size=2)
    yield app
    app.close()


# How often the tests' worker beats: the requeue comes at the first beat past the bound.
BEAT = timedelta(seconds=20)


def beats(start: datetime, until: timedelta) -> list[datetime]:
    """Heartbeat times every `BEAT` after `start`, up to `start + until`."""
    return [start + BEAT * n for n in range(1, until // BEAT + 1)]


def claimed_now(studio: Studio) -> tuple[str, str, datetime]:
    """A task claimed by a new worker now: the task, the worker, when."""
    owner, project_id = funded(studio)
    task_id = queue(studio, project_id, owner)
    worker = name("w")
    start = datetime.now(UTC)
    studio.claim_task(task_id, worker, now=start)
    return task_id, worker, start


def test_a_claim_whose_answer_was_lost_is_back_in_the_queue_within_the_bound(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    task_id = queue(studio, project_id, owner)
    worker = name("w")
    start = datetime.now(UTC)
    assert studio.claim_next(worker, "api", None, [task_id], now=start) is not None
    # The answer is lost: the worker goes on heartbeating with nothing in hand.
    statuses = []
    for at in beats(start, UNLISTED_AFTER + BEAT):
        answer = studio.heartbeat(worker, [], now=at, exhaustive=True)
        statuses.append((at - start, task(studio, task_id).status, dict(answer.changed)))
    assert statuses == [
        (timedelta(seconds=20), IN_PROGRESS, {}),
        (timedelta(seconds=40), IN_PROGRESS, {}),
        (timedelta(seconds=60), QUEUED, {task_id: QUEUED}),
        (timedelta(seconds=80), QUEUED, {}),
    ]
    back = task(studio, task_id)
    assert back.attempts == 1 and "no longer lists it" in (back.error_message or "")
    assert held_by(studio, worker) == set()
    # It was never lost: a sweep finds nothing to do with it.
    swept = studio.sweep_lost_workers(start + UNLISTED_AFTER + BEAT + timedelta(seconds=1))
    assert worker not in swept.lost_workers


def test_a_task_the_worker_lists_is_never_released(studio: Studio) -> None:
    owner, project_id = funded(studio)
    listed, forgotten = queue(studio, project_id, owner), queue(studio, project_id, owner)
    worker = name("w")
    start = datetime.now(UTC)
    studio.claim_task(listed, worker, now=start)
    studio.claim_task(forgotten, worker, now=start)
    for at in beats(start, timedelta(minutes=10)):
        studio.heartbeat(worker, [listed], now=at, exhaustive=True)
    assert (task(studio, listed).status, task(studio, forgotten).status) == (IN_PROGRESS, QUEUED)
    assert held_by(studio, worker) == {listed}
    assert task(studio, listed).attempts == 0


def test_a_claim_younger_than_the_bound_may_still_be_on_its_way_and_stays(
    studio: Studio,
) -> None:
    """A heartbeat the worker sent before the claim's answer reached it leaves it out."""
    task_id, worker, start = claimed_now(studio)
    studio.heartbeat(worker, [], now=start + UNLISTED_AFTER - timedelta(seconds=1), exhaustive=True)
    assert task(studio, task_id).status == IN_PROGRESS


def test_a_heartbeat_that_lists_some_tasks_only_requeues_nothing_as_before(
    studio: Studio,
) -> None:
    task_id, worker, start = claimed_now(studio)
    for at in beats(start, LOST_AFTER * 2):
        assert studio.heartbeat(worker, [], now=at).stop == ()
    assert task(studio, task_id).status == IN_PROGRESS


def test_a_chained_claim_whose_answer_was_lost_is_requeued_and_charged_once(
    studio: Studio, elsewhere: Studio
) -> None:
    """`complete_and_claim` saved the completion and the next claim; its answer is lost.
    The next task goes back to the queue, another worker runs it, and the owner pays
    each task once: the first worker's late completion of it is refused."""
    owner, project_id = funded(studio)
    first, second = queue(studio, project_id, owner), queue(studio, project_id, owner)
    lost_answer, other = name("w"), name("w")
    studio.claim_task(first, lost_answer)
    balance = studio.ledger(owner).balance
    done = chained(studio, first, lost_answer, second)
    assert done["claimed"]["task_id"] == second  # ... which the worker never hears
    claimed_at = task(studio, second).started_at or datetime.now(UTC)
    studio.heartbeat(lost_answer, [], now=claimed_at + UNLISTED_AFTER, exhaustive=True)
    assert task(studio, second).status == QUEUED
    # Another process's worker claims and finishes it.
    assert elsewhere.claim_next(other, "api", None, [second]) is not None
    elsewhere.complete_task(second, "/m/second.png", worker_id=other)
    with pytest.raises(InvalidTransitionError):
        studio.complete_task(second, "/m/late.png")
    assert (task(studio, first).status, task(studio, second).status) == (COMPLETE, COMPLETE)
    costs = Decimal(done["cost"]) + (task(studio, second).cost or Decimal(0))
    assert studio.ledger(owner).balance == balance - costs
    assert costs > 0

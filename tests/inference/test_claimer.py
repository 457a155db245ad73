"""Claiming for idle actors, without Ray: a queue of candidates and a claim verb that
takes the first id it is offered (the studio's rules are tested with the studio)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from inference.actors import IDLE, ActorSpec, Slot
from inference.claiming import Claimer
from inference.ports import Candidate


class Queue:
    """Queued task ids, oldest first, all of one run type; a claim takes one off."""

    def __init__(self, *task_ids: str) -> None:
        self.queued = list(task_ids)
        self.reads = 0

    def candidates(
        self, run_types: Sequence[str], task_types: Collection[str], limit: int
    ) -> list[Candidate]:
        self.reads += 1
        return [Candidate(task_id, "gpu") for task_id in self.queued[:limit]]

    def claim_next(
        self, worker_id: str, run_type: str, current_model: str | None, ids: Iterable[object]
    ) -> dict[str, Any] | None:
        for task_id in ids:
            if task_id in self.queued:
                self.queued.remove(str(task_id))
                return {"task_id": task_id, "task_type": "image_generation"}
        return None


def claimer(queue: Queue) -> Claimer:
    return Claimer(queue, queue, "worker-1", ("gpu",), (2, 16))  # type: ignore[arg-type]


def slot(index: int = 0) -> Slot:
    return Slot(ActorSpec(("text_to_image",)), index, actor=None, state=IDLE)


def test_each_idle_actor_gets_one_task_oldest_first() -> None:
    queue = Queue("a", "b", "c")
    started: list[tuple[str, str]] = []
    claims = claimer(queue)
    assert claims.fill(
        [slot(0), slot(1)], lambda s, task, at: started.append((s.name, task["task_id"]))
    )
    assert started == [("text_to_image#0", "a"), ("text_to_image#1", "b")]
    assert queue.queued == ["c"]


def test_an_empty_queue_claims_nothing() -> None:
    assert claimer(Queue()).fill([slot()], lambda *_: None) is False


def test_a_page_read_while_the_actor_runs_opens_the_next_claim_without_a_query() -> None:
    queue = Queue("a", "b")
    claims = claimer(queue)
    claims.prefetch(slot())
    reads = queue.reads
    claimed = claims.claim_for(slot())
    assert claimed is not None and claimed[0]["task_id"] == "a"
    assert queue.reads == reads


def test_an_id_claimed_a_moment_ago_is_not_offered_again_until_forgotten() -> None:
    queue = Queue("a")
    claims = claimer(queue)
    claims.remember("a")
    assert claims.claim_for(slot()) is None
    claims.forget("a")
    claimed = claims.claim_for(slot())
    assert claimed is not None and claimed[0]["task_id"] == "a"

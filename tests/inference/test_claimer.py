"""Claiming for idle actors, without Ray: a queue of candidates and a claim verb that
takes the first id it is offered (the studio's rules are tested with the studio)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from inference.actors import BUSY, IDLE, ActorSpec, Slot
from inference.chaining import ChainingCommands
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


class Studio(Queue):
    """The queue, with completions: `complete_and_claim` claims as `claim_next` does."""

    def __init__(self, *task_ids: str) -> None:
        super().__init__(*task_ids)
        self.sent: list[str] = []

    def complete_task(self, task_id: str, *args: Any, **kw: Any) -> dict[str, Any]:
        self.sent.append("complete_task")
        return {"task_id": task_id, "status": "Complete"}

    def complete_and_claim(self, task_id: str, *args: Any, **kw: Any) -> dict[str, Any]:
        self.sent.append("complete_and_claim")
        claimed = self.claim_next(kw["worker_id"], kw["run_type"], None, kw["candidate_ids"])
        return {"task_id": task_id, "status": "Complete", "claimed": claimed}


def chaining(studio: Queue) -> ChainingCommands:
    chain = ChainingCommands(studio)  # type: ignore[arg-type]
    chain.claimer = claimer(studio)
    return chain


def test_a_completion_on_an_offered_idle_slot_claims_its_next_task_in_the_same_command() -> None:
    studio = Studio("b", "c")
    chain, idle = chaining(studio), slot()
    chain.offer("a", idle)
    chain.complete_task("a", "/m/a.png", worker_id="worker-1")
    assert studio.sent == ["complete_and_claim"] and studio.queued == ["c"]
    taken = chain.take("a")
    assert taken is not None and taken[0] is idle and taken[1]["task_id"] == "b"
    assert chain.take("a") is None  # handed over once


def test_a_completion_without_an_offer_or_on_a_busy_slot_claims_nothing() -> None:
    studio = Studio("b")
    chain, busy = chaining(studio), slot()
    chain.complete_task("a", "/m/a.png", worker_id="worker-1")
    busy.state = BUSY
    chain.offer("x", busy)
    chain.complete_task("x", "/m/x.png", worker_id="worker-1")
    assert studio.sent == ["complete_task", "complete_task"] and studio.queued == ["b"]
    assert chain.take("a") is None and chain.take("x") is None


def test_commands_without_complete_and_claim_complete_alone() -> None:
    queue = Queue("b")
    chain = chaining(queue)
    chain.offer("a", slot())
    assert chain.chains is False and chain.take("a") is None

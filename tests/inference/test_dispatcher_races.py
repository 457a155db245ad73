"""The dispatcher's claims against what can come between a claim and its use: a claim
whose answer is lost (the worker heartbeats without it: back in the queue), and a claim
made as the dispatcher begins stopping (handed back at once, or never made)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from inference_harness import Rig, funded_project, start_dispatcher, task, wait_for

from domain.studio import Studio
from domain.task import COMPLETE, QUEUED
from domain.worker import UNLISTED_AFTER
from inference.dispatcher import Dispatcher
from inference.media import LocalMediaStore

pytestmark = pytest.mark.timeout(180)

QUICK = {"prompt": "quick", "resolution": "64x64", "steps": 2}
SLOW = {"prompt": "slow", "resolution": "64x64", "steps": 60}
DRAIN = 30.0  # far longer than any of these runs waits for a stop


class Through:
    """The studio, as the dispatcher's commands reach it; subclasses change one verb."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.dispatcher: Dispatcher | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.studio, name)

    def stop_now(self) -> threading.Thread:
        """Begins the dispatcher's stop on another thread; returns once it has begun."""
        assert self.dispatcher is not None
        stopper = threading.Thread(target=self.dispatcher.stop, kwargs={"drain": DRAIN})
        stopper.start()
        wait_for(lambda: self.dispatcher and self.dispatcher.stopping, 5, "stopping")
        return stopper


class LosesTheFirstClaimsAnswer(Through):
    """The first claim is saved but its answer never arrives; heartbeats reach the studio
    as if `UNLISTED_AFTER` later (the test cannot wait a minute)."""

    lost: str | None = None

    def claim_next(self, *args: Any, **kwargs: Any) -> Any:
        claimed = self.studio.claim_next(*args, **kwargs)
        if claimed is not None and self.lost is None:
            self.lost = str(claimed.task_id)
            raise TimeoutError("the claim's answer was lost")
        return claimed

    def heartbeat(self, worker_id: str, task_ids: Iterable[object] = (), **kw: Any) -> Any:
        later = datetime.now(UTC) + UNLISTED_AFTER
        return self.studio.heartbeat(worker_id, task_ids, now=later, **kw)


class StopsAsTheCompletionClaims(Through):
    """Stop begins while the completion that claims the next task is being saved."""

    stopper: threading.Thread | None = None

    def complete_and_claim(self, *args: Any, **kwargs: Any) -> Any:
        self.stopper = self.stopper or self.stop_now()
        return self.studio.complete_and_claim(*args, **kwargs)


class StopsWhileFilesAreStored(LocalMediaStore):
    """Stop begins after the run finished, while its files are stored: before the
    completion's command is sent."""

    through: Through
    stopper: threading.Thread | None = None

    def put(self, data: bytes, suffix: str, content_type: str) -> str:
        self.stopper = self.stopper or self.through.stop_now()
        return super().put(data, suffix, content_type)


@pytest.fixture
def own_dispatcher(rig: Rig) -> Iterator[Any]:
    """Starts a dispatcher over `Through(rig's worker studio)` in place of the rig's."""
    rig.dispatcher.stop(drain=10)

    def start(through: Through, media: LocalMediaStore | None = None) -> Dispatcher:
        rig.dispatcher = start_dispatcher(
            through,  # type: ignore[arg-type]
            rig.candidates,
            rig.dispatcher.pool,
            media or rig.media,
            rig.dispatcher.config,
        )
        through.dispatcher = rig.dispatcher
        return rig.dispatcher

    yield start
    rig.dispatcher.stop(drain=10)
    rig.restart_dispatcher()


def queued(rig: Rig, owner: str, project_id: str, params: dict[str, Any]) -> str:
    made = rig.studio.create_task(project_id, owner, "image_generation", dict(params))
    return str(made["task_id"])


def topics(rig: Rig, task_id: str) -> list[str]:
    return [str(row["topic"]).removeprefix("darkroom.task.") for row in rig.studio.history(task_id)]


def test_a_claim_whose_answer_was_lost_is_requeued_while_the_listed_task_runs_on(
    rig: Rig, own_dispatcher: Any
) -> None:
    owner, project_id = funded_project(rig.studio)
    balance = rig.studio.ledger(owner).balance
    lost, listed = queued(rig, owner, project_id, QUICK), queued(rig, owner, project_id, SLOW)
    through = LosesTheFirstClaimsAnswer(rig.worker_studio)
    own_dispatcher(through)
    wait_for(lambda: task(rig.studio, lost).status == COMPLETE, 60, "the lost claim done")
    wait_for(lambda: task(rig.studio, listed).status == COMPLETE, 60, "the listed task done")
    assert through.lost == lost
    assert topics(rig, lost).count("requeued") == 1 and task(rig.studio, lost).attempts == 1
    assert "requeued" not in topics(rig, listed) and "released" not in topics(rig, listed)
    charged = (task(rig.studio, lost).cost or 0) + (task(rig.studio, listed).cost or 0)
    assert rig.studio.ledger(owner).balance == balance - charged


# A local store's files are written on the dispatcher's loop (`store_inline`); any other
# store's on the settle threads: stop may begin during either.
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "settle-threads"])
def test_a_completion_after_stopping_began_claims_nothing(
    rig: Rig, own_dispatcher: Any, tmp_path: Any, inline: bool
) -> None:
    owner, project_id = funded_project(rig.studio)
    done, waiting = queued(rig, owner, project_id, QUICK), queued(rig, owner, project_id, SLOW)
    through = Through(rig.worker_studio)
    media = StopsWhileFilesAreStored(tmp_path / "media")
    media.through = through
    media.local = inline
    began = time.monotonic()
    own_dispatcher(through, media)
    wait_for(lambda: media.stopper is not None, 60, "the first run's files stored")
    assert media.stopper is not None
    media.stopper.join(DRAIN)
    assert time.monotonic() - began < DRAIN
    assert task(rig.studio, done).status == COMPLETE
    assert (task(rig.studio, waiting).status, topics(rig, waiting)) == (QUEUED, ["created"])
    rig.studio.cancel_task(waiting, owner, "test over")


def test_a_task_a_completion_claimed_as_stopping_began_is_handed_back_at_once(
    rig: Rig, own_dispatcher: Any
) -> None:
    owner, project_id = funded_project(rig.studio)
    done, claimed = queued(rig, owner, project_id, QUICK), queued(rig, owner, project_id, SLOW)
    through = StopsAsTheCompletionClaims(rig.worker_studio)
    began = time.monotonic()
    own_dispatcher(through)
    wait_for(lambda: through.stopper is not None, 60, "the completion that claims")
    assert through.stopper is not None
    through.stopper.join(DRAIN)
    assert time.monotonic() - began < DRAIN, "it ran the claimed task until the deadline"
    assert task(rig.studio, done).status == COMPLETE
    back = task(rig.studio, claimed)
    assert (back.status, back.attempts, back.progress) == (QUEUED, 0, None)
    assert topics(rig, claimed) == ["created", "claimed", "released"]
    rig.studio.cancel_task(claimed, owner, "test over")

"""A dispatcher stopping gracefully (a deploy, a restart) hands its running tasks back to
the queue without spending an attempt; only a crash counts one."""

from __future__ import annotations

import pytest
from inference_harness import Rig, funded_project, task, wait_for

from domain.task import CANCELLED, MAX_ATTEMPTS, QUEUED, Task

pytestmark = pytest.mark.timeout(180)


def running_on(rig: Rig, task_id: str, worker_id: str) -> None:
    """Waits until the task reports progress under this worker."""

    def check() -> Task | None:
        t = task(rig.studio, task_id)
        return t if t.is_terminal or (t.worker_id == worker_id and t.progress) else None

    found = wait_for(check, 60, f"task {task_id} running on {worker_id}")
    assert not found.is_terminal, f"ended early: {found.error_message}"


def test_stopping_the_dispatcher_mid_task_releases_it_with_its_attempts_unchanged(rig: Rig) -> None:
    owner, project_id = funded_project(rig.studio)
    made = rig.studio.create_task(
        project_id,
        owner,
        "image_generation",
        {"prompt": "slow", "resolution": "64x64", "steps": 500},
    )
    task_id = str(made["task_id"])
    for restart in range(MAX_ATTEMPTS + 1):  # one more than a crash would be allowed
        if restart:
            rig.restart_dispatcher()
        running_on(rig, task_id, rig.dispatcher.worker_id)
        rig.dispatcher.stop(drain=0)
        released = task(rig.studio, task_id)
        assert (released.status, released.attempts, released.worker_id) == (QUEUED, 0, None)
        assert [m.command for m in rig.dispatcher.timings if m.task_id == task_id] == ["release"]
    topics = [row["topic"] for row in rig.studio.history(task_id)]
    assert topics.count("darkroom.task.released") == MAX_ATTEMPTS + 1
    assert "darkroom.task.requeued" not in topics
    rig.studio.cancel_task(task_id, owner, "test over")
    assert task(rig.studio, task_id).status == CANCELLED

"""Acceptance, end to end: cancelling a running task, and an actor killed under one."""

from __future__ import annotations

import os
import signal
import time

import pytest
from inference_harness import IMAGE_ACTOR, Rig, funded_project, task, wait_for, wait_until_settled

from domain.task import CANCELLED, COMPLETE, IN_PROGRESS

pytestmark = pytest.mark.timeout(240)


def long_generation(rig: Rig, steps: int) -> tuple[str, str]:
    owner, project_id = funded_project(rig.studio)
    made = rig.studio.create_task(
        project_id,
        owner,
        "image_generation",
        {"prompt": "slow", "resolution": "64x64", "steps": steps},
    )
    task_id = str(made["task_id"])
    running = wait_for(
        lambda: (t := task(rig.studio, task_id)).progress or t.is_terminal,
        60,
        "the first progress report",
    )
    assert running is not True, f"ended early: {task(rig.studio, task_id).error_message}"
    return owner, task_id


def timing_of(rig: Rig, task_id: str, outcome: str):
    return wait_for(
        lambda: next(
            (m for m in rig.dispatcher.timings if m.task_id == task_id and m.outcome == outcome),
            None,
        ),
        30,
        f"a {outcome} outcome of {task_id}",
    )


def test_cancelling_a_running_task_stops_its_denoising_loop_within_a_second(rig: Rig) -> None:
    owner, task_id = long_generation(rig, steps=500)  # half a minute if left alone
    asked = time.time()
    rig.studio.cancel_task(task_id, owner, "changed my mind")
    stopped = timing_of(rig, task_id, "cancelled")
    assert stopped.received - asked < 1.0
    cancelled = task(rig.studio, task_id)
    assert cancelled.status == CANCELLED
    assert cancelled.output_location is None and cancelled.cost is None
    assert rig.studio.ledger(owner).spent_on(cancelled.id) == 0
    assert stopped.command == ""  # nothing sent: the domain already said Cancelled
    # The actor is free again and takes the next task.
    owner2, project_id = funded_project(rig.studio)
    after = rig.studio.create_task(
        project_id, owner2, "image_generation", {"prompt": "next", "resolution": "32x32"}
    )
    (done,) = wait_until_settled(rig.studio, [after["task_id"]], timeout=60)
    assert done.status == COMPLETE and done.result_data["actor"] == IMAGE_ACTOR


def test_a_task_whose_actor_is_killed_is_requeued_and_finishes_on_the_restarted_actor(
    rig: Rig,
) -> None:
    _, task_id = long_generation(rig, steps=80)
    slot = next(s for s in rig.dispatcher.pool.slots if s.task_id == task_id)
    first_pid = slot.info["pid"]
    os.kill(first_pid, signal.SIGKILL)
    lost = timing_of(rig, task_id, "lost")
    assert lost.command == "requeue"
    (done,) = wait_until_settled(rig.studio, [task_id], timeout=150)
    assert done.status == COMPLETE and done.attempts == 1
    assert done.result_data["actor"] == slot.name
    assert slot.info["pid"] != first_pid and slot.restarts >= 1
    rerun = timing_of(rig, task_id, "done")
    # No work went to the actor before its restarted process answered ready().
    assert rerun.claim_started >= slot.ready_at > lost.received
    topics = [row["topic"] for row in rig.studio.history(task_id)]
    assert topics.count("darkroom.task.requeued") == 1
    assert topics.count("darkroom.task.claimed") == 2
    assert task(rig.studio, task_id).status != IN_PROGRESS

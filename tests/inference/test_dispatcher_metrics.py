"""The dispatcher's metrics (inference/metrics.py) move with a real task on a Ray actor:
`darkroom_inference_seconds{task_type,outcome}` counts the run, and
`darkroom_dispatcher_running_tasks` is back to 0 once it is settled."""

from __future__ import annotations

import time

import pytest
from inference_harness import Rig, funded_project, wait_until_settled
from prometheus_client import REGISTRY

from domain.task import COMPLETE

pytestmark = pytest.mark.timeout(180)


def inference_runs(task_type: str) -> dict[str, float]:
    """Runs counted so far for a task type, by outcome."""
    return {
        s.labels["outcome"]: s.value
        for f in REGISTRY.collect()
        if f.name == "darkroom_inference_seconds"
        for s in f.samples
        if s.name.endswith("_count") and s.labels["task_type"] == task_type
    }


def test_a_finished_task_is_counted_by_type_and_nothing_stays_running(rig: Rig) -> None:
    before = inference_runs("image_generation")
    owner, project_id = funded_project(rig.studio)
    made = rig.studio.create_task(
        project_id,
        owner,
        "image_generation",
        {"prompt": "a pier", "resolution": "32x32", "seed": 3},
    )
    (done,) = wait_until_settled(rig.studio, [made["task_id"]], timeout=90)
    assert done.status == COMPLETE, done.error_message
    # The run is counted just after its outcome's command is saved: wait a moment for it.
    deadline = time.monotonic() + 10
    while (
        sum((after := inference_runs("image_generation")).values()) == sum(before.values())
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert sum(after.values()) - sum(before.values()) == 1
    assert REGISTRY.get_sample_value("darkroom_dispatcher_running_tasks") == 0

"""The dispatcher on a real Ray with the tiny pipelines: claiming for idle actors only,
model affinity, progress, outcomes as domain commands."""

from __future__ import annotations

import time

import pytest
from inference_harness import (
    IMAGE_ACTOR,
    VIDEO_ACTOR,
    Rig,
    funded_project,
    generations_made_by,
    task,
    uploaded_image,
    wait_for,
    wait_until_settled,
)

from domain.task import COMPLETE, FAILED
from inference.outcomes import Timing

pytestmark = pytest.mark.timeout(180)


def overlapping(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    marks = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    open_now = peak = 0
    for _, delta in marks:
        open_now += delta
        peak = max(peak, open_now)
    return peak


def test_a_dispatcher_claims_no_more_tasks_of_a_model_than_it_has_idle_actors_for_it(
    rig: Rig,
) -> None:
    owner, project_id = funded_project(rig.studio)
    made = rig.studio.create_tasks(
        project_id,
        owner,
        [
            {
                "task_type": "image_generation",
                "params": {"prompt": f"fox {i}", "resolution": "64x64", "steps": 4, "seed": i},
            }
            for i in range(4)
        ],
    )
    done = wait_until_settled(rig.studio, made["task_ids"], timeout=90)
    assert [t.status for t in done] == [COMPLETE] * 4

    # One text-to-image actor: each task was claimed only once the actor was free again
    # (recording a result overlaps the next claim: the actor is idle by then).
    def recorded() -> list[Timing] | None:
        marks = [m for m in rig.dispatcher.timings if m.task_id in made["task_ids"]]
        return marks if len(marks) == 4 else None

    marks = wait_for(recorded, 10, "four outcomes recorded")
    assert overlapping([(m.claim_started, m.actor_finished) for m in marks]) == 1
    assert {t.result_data["actor"] for t in done} == {IMAGE_ACTOR}


def test_each_task_runs_on_the_actor_holding_its_model_while_others_are_busy(rig: Rig) -> None:
    owner, project_id = funded_project(rig.studio)
    first = uploaded_image(rig.studio, rig.media, owner, project_id, 32, 32)
    last = uploaded_image(rig.studio, rig.media, owner, project_id, 32, 32, (0, 0, 255))
    slow = rig.studio.create_task(
        project_id,
        owner,
        "image_generation",
        {"prompt": "slow", "resolution": "64x64", "steps": 60},
    )
    wait_for(lambda: task(rig.studio, slow["task_id"]).status == "In Progress", 30, "slow start")
    segment = rig.studio.create_task(
        project_id,
        owner,
        "individual_travel_segment",
        {
            "start_image_url": rig.studio.generation(first).location,
            "end_image_url": rig.studio.generation(last).location,
            "num_frames": 9,
            "resolution": "32x32",
            "steps": 2,
        },
    )
    (video,) = wait_until_settled(rig.studio, [segment["task_id"]], timeout=60)
    # The video model's own actor took it while the image actor was still busy.
    assert video.status == COMPLETE and video.result_data["actor"] == VIDEO_ACTOR
    assert task(rig.studio, slow["task_id"]).status == "In Progress"
    wait_until_settled(rig.studio, [slow["task_id"]], timeout=90)


def test_progress_is_recorded_on_the_task_as_step_i_of_n(rig: Rig) -> None:
    owner, project_id = funded_project(rig.studio)
    made = rig.studio.create_task(
        project_id,
        owner,
        "image_generation",
        {"prompt": "slow", "resolution": "64x64", "steps": 40},
    )
    step, total = wait_for(lambda: task(rig.studio, made["task_id"]).progress, 60, "progress")
    assert total == 40 and 1 <= step < 40
    (done,) = wait_until_settled(rig.studio, [made["task_id"]], timeout=90)
    assert done.status == COMPLETE


def test_a_completed_task_becomes_a_gallery_picture_whose_file_is_in_the_media_store(
    rig: Rig,
) -> None:
    owner, project_id = funded_project(rig.studio)
    made = rig.studio.create_task(
        project_id,
        owner,
        "image_generation",
        {"prompt": "a lighthouse", "resolution": "48x32", "seed": 7},
    )
    (done,) = wait_until_settled(rig.studio, [made["task_id"]], timeout=60)
    assert done.status == COMPLETE
    (generation,) = generations_made_by(rig.studio, project_id, done.id)
    assert generation.location == done.output_location
    assert generation.primary.variant_type == "original"
    assert generation.thumbnail_url == done.thumbnail_url
    assert rig.media.get(done.output_location).startswith(b"\x89PNG")
    assert done.result_data["width"] == 48 and done.result_data["seed"] == 7


def test_a_task_whose_input_is_missing_fails_at_once_without_a_retry(rig: Rig) -> None:
    owner, project_id = funded_project(rig.studio)
    made = rig.studio.create_task(
        project_id, owner, "image_upscale", {"image_url": "/media/2026/" + "0" * 32 + ".png"}
    )
    (failed,) = wait_until_settled(rig.studio, [made["task_id"]], timeout=60)
    assert failed.status == FAILED and failed.attempts == 0
    assert "MediaNotFoundError" in (failed.error_message or "")
    assert rig.studio.ledger(owner).spent_on(failed.id) == 0


def test_a_task_whose_input_cannot_be_fetched_is_retried_and_fails_on_the_third_attempt(
    rig: Rig,
) -> None:
    owner, project_id = funded_project(rig.studio)
    made = rig.studio.create_task(
        project_id, owner, "image_upscale", {"image_url": "http://127.0.0.1:9/nothing-listens.png"}
    )
    (failed,) = wait_until_settled(rig.studio, [made["task_id"]], timeout=60, statuses=("Failed",))
    assert failed.attempts == 3
    assert "attempt 3 of 3" in (failed.error_message or "")
    assert "could not fetch" in (failed.error_message or "")


def test_a_task_whose_model_no_actor_holds_stays_queued_instead_of_loading_it(rig: Rig) -> None:
    owner, project_id = funded_project(rig.studio)
    source = uploaded_image(rig.studio, rig.media, owner, project_id, 16, 16)
    location = rig.studio.generation(source).location
    made = rig.studio.create_task(
        project_id,
        owner,
        "image_inpaint",  # no inpaint actor here
        {"image_url": location, "mask_url": location, "based_on": source, "prompt": "a door"},
    )
    time.sleep(1.0)  # twenty polls of the claim queue
    assert task(rig.studio, made["task_id"]).status == "Queued"
    assert made["task_id"] not in {m.task_id for m in rig.dispatcher.timings}
    rig.studio.cancel_task(made["task_id"], owner)

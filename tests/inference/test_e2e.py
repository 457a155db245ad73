"""Acceptance, end to end: tasks created through the studio's verbs, claimed by the
dispatcher from the claim queue, run by Ray actors on the tiny diffusion pipelines,
their files in the media store and their results in the gallery."""

from __future__ import annotations

from decimal import Decimal

import pytest
from inference_harness import (
    Rig,
    funded_project,
    generations_made_by,
    image_size,
    task,
    uploaded_image,
    video_frames,
    wait_until_settled,
)

from domain.credits import SPEND, CreditLedger
from domain.task import CANCELLED, COMPLETE, FAILED

pytestmark = pytest.mark.timeout(180)


def test_an_image_generation_batch_lands_in_the_gallery_as_pngs_of_the_requested_size(
    rig: Rig,
) -> None:
    owner, project_id = funded_project(rig.studio)
    made = rig.studio.create_tasks(
        project_id,
        owner,
        [
            {
                "task_type": "image_generation",
                "params": {"prompt": prompt, "resolution": "64x48", "seed": i},
            }
            for i, prompt in enumerate(["a fox", "a lighthouse", "a red door"])
        ],
    )
    done = wait_until_settled(rig.studio, made["task_ids"], timeout=90)
    assert [t.status for t in done] == [COMPLETE] * 3
    for finished in done:
        (generation,) = generations_made_by(rig.studio, project_id, finished.id)
        shown = rig.studio.generation(generation.id)
        assert shown.media_type == "image" and not shown.is_child
        assert shown.primary.variant_type == "original"
        assert shown.location == finished.output_location
        assert image_size(rig.media, shown.location) == (64, 48)
        assert rig.media.get(shown.thumbnail_url).startswith(b"\x89PNG")


def test_an_upscale_becomes_an_upscaled_variant_four_times_the_size(rig: Rig) -> None:
    owner, project_id = funded_project(rig.studio)
    source_id = uploaded_image(rig.studio, rig.media, owner, project_id, 24, 16)
    source = rig.studio.generation(source_id)
    made = rig.studio.create_task(
        project_id,
        owner,
        "image_upscale",
        {
            "image_url": source.location,
            "based_on": source_id,
            "scale_factor": 4,
            "is_primary": True,
        },
    )
    (done,) = wait_until_settled(rig.studio, [made["task_id"]], timeout=60)
    assert done.status == COMPLETE
    upscaled = rig.studio.generation(source_id)
    variant = upscaled.primary
    assert variant.variant_type == "upscaled" and variant.location == done.output_location
    assert image_size(rig.media, variant.location) == (96, 64)
    assert len(upscaled.variants) == 2  # the original stays


def travel(rig: Rig, owner: str, project_id: str, segment_frames: list[int]) -> dict:
    images = [
        uploaded_image(rig.studio, rig.media, owner, project_id, 32, 32, color)
        for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    ]
    return rig.studio.create_travel(
        project_id,
        owner,
        image_generation_ids=images,
        params={"resolution": "32x32", "steps": 2, "seed": 5, "segment_frames": segment_frames},
    )


def test_travelling_between_three_images_makes_a_parent_video_of_two_stitched_segments(
    rig: Rig,
) -> None:
    owner, project_id = funded_project(rig.studio)
    run = travel(rig, owner, project_id, [9, 13])
    assert len(run["segment_task_ids"]) == 2 and run["stitch_task_id"]
    finished = wait_until_settled(rig.studio, run["task_ids"], timeout=120)
    assert [t.status for t in finished] == [COMPLETE] * 4
    parent = rig.studio.generation(run["parent_generation_id"])
    assert parent.media_type == "video"
    assert sorted(parent.children) == [0, 1]
    children = [rig.studio.generation(parent.children[i]) for i in (0, 1)]
    assert [video_frames(rig.media, c.location) for c in children] == [9, 13]
    assert all(c.is_child and c.media_type == "video" for c in children)
    stitch = task(rig.studio, run["stitch_task_id"])
    assert parent.location == stitch.output_location
    assert parent.primary.variant_type == "travel_stitch"
    assert video_frames(rig.media, parent.location) == 9 + 13
    assert rig.media.get(parent.thumbnail_url).startswith(b"\x89PNG")


def uploaded_clip(
    rig: Rig, owner: str, project_id: str, frames: int, color: tuple[int, int, int]
) -> str:
    import numpy as np

    from inference.frames import encode_mp4

    pixels = np.zeros((frames, 32, 32, 3), dtype=np.uint8)
    pixels[...] = color
    location = rig.media.put(encode_mp4(pixels, 16.0), ".mp4", "video/mp4")
    return str(rig.studio.create_generation(project_id, owner, location, "video")["generation_id"])


def test_joining_two_clips_makes_one_video_of_both_clips_and_the_transition_between(
    rig: Rig,
) -> None:
    owner, project_id = funded_project(rig.studio)
    clips = [
        uploaded_clip(rig, owner, project_id, 5, (255, 0, 0)),
        uploaded_clip(rig, owner, project_id, 7, (0, 0, 255)),
    ]
    run = rig.studio.create_join_clips(
        project_id,
        owner,
        clip_generation_ids=clips,
        params={"frames_per_transition": 9, "resolution": "32x32", "steps": 2, "seed": 1},
    )
    finished = wait_until_settled(rig.studio, run["task_ids"], timeout=120)
    assert [t.status for t in finished] == [COMPLETE] * 3
    transition = task(rig.studio, run["segment_task_ids"][0])
    assert video_frames(rig.media, transition.output_location) == 9
    parent = rig.studio.generation(run["parent_generation_id"])
    assert parent.location == task(rig.studio, run["stitch_task_id"]).output_location
    assert video_frames(rig.media, parent.location) == 5 + 9 + 7


def test_a_failing_segment_fails_its_orchestrator_and_stops_the_rest_of_the_run(rig: Rig) -> None:
    owner, project_id = funded_project(rig.studio)
    run = travel(rig, owner, project_id, [9, 5000])  # the second asks for too many frames
    finished = wait_until_settled(rig.studio, run["task_ids"], timeout=120)
    orchestrator, first, second, stitch = finished
    assert (first.status, second.status, stitch.status) == (COMPLETE, FAILED, CANCELLED)
    assert "InvalidInputError" in (second.error_message or "") and second.attempts == 0
    assert orchestrator.status == FAILED
    assert orchestrator.error_message == "1 of 2 segments failed"
    parent = rig.studio.generation(run["parent_generation_id"])
    assert parent.location is None  # no stitched video


def test_credits_are_charged_once_for_completed_tasks_and_never_for_failed_ones(rig: Rig) -> None:
    owner, project_id = funded_project(rig.studio)
    before = rig.studio.ledger(owner).balance
    good = rig.studio.create_tasks(
        project_id,
        owner,
        [
            {"task_type": "image_generation", "params": {"prompt": "ok", "resolution": "32x32"}}
            for _ in range(2)
        ],
    )["task_ids"]
    bad = rig.studio.create_task(
        project_id, owner, "image_upscale", {"image_url": "/media/2026/" + "f" * 32 + ".png"}
    )["task_id"]
    run = travel(rig, owner, project_id, [9, 9])
    ids = [*good, bad, *run["task_ids"]]
    finished = {str(t.id): t for t in wait_until_settled(rig.studio, ids, timeout=150)}
    assert finished[bad].status == FAILED
    complete = {i for i, t in finished.items() if t.status == COMPLETE}
    assert complete == {*good, *run["task_ids"]}
    ledger = rig.studio.ledger(owner)
    spends = [
        str(e.task_id)
        for e in rig.studio.events.get(ledger.id)  # type: ignore[attr-defined]
        if isinstance(e, CreditLedger.EntryRecorded) and e.kind == SPEND
    ]
    assert len(spends) == len(set(spends))  # once per task
    assert set(spends) <= complete
    assert set(good) <= set(spends)
    charged = sum((finished[i].cost or Decimal(0) for i in complete), Decimal(0))
    assert charged > 0
    assert ledger.balance == before - charged

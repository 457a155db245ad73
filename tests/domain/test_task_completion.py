"""Completion routing, billing and orchestrated runs against a real PostgreSQL store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.errors import InvalidParamsError, InvalidTransitionError, ValidationError
from domain.generation import Generation
from domain.shot import Shot
from domain.studio import Studio
from domain.task import CANCELLED, COMPLETE, FAILED, IN_PROGRESS, QUEUED, Task
from tests.domain.test_task_services import funded, name, queue, task


def generation(studio: Studio, ident: object) -> Generation:
    found = studio.repository.get(uuid.UUID(str(ident)))
    assert isinstance(found, Generation)
    return found


def image(studio: Studio, project_id: str, owner: str) -> str:
    return str(
        studio.create_generation(project_id, owner, f"/m/{uuid.uuid4()}.png")["generation_id"]
    )


def run(studio: Studio, task_id: str, output: str = "/m/out.png", **kw: Any) -> dict[str, Any]:
    """A worker claims the task and completes it."""
    worker = name("w")
    studio.claim_task(task_id, worker)
    return studio.complete_task(task_id, output, worker_id=worker, **kw)


def balance(studio: Studio, owner: str) -> Decimal:
    return studio.ledger(owner).balance


# -- routing ---------------------------------------------------------------------------
def test_completing_an_image_generation_creates_a_generation_with_an_original_primary_variant_in_its_shot(  # noqa: E501
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    shot_id = studio.create_shot(project_id, owner, "Hero")["shot_id"]
    task_id = queue(
        studio,
        project_id,
        owner,
        params={"prompt": "a fox", "shot_id": shot_id, "add_in_position": True},
    )
    done = run(studio, task_id, thumbnail_url="/m/thumb.png")
    made = generation(studio, done["generation_id"])
    primary = made.primary
    assert primary is not None and primary.variant_type == "original"
    assert (made.media_type, made.location, made.thumbnail_url) == (
        "image",
        "/m/out.png",
        "/m/thumb.png",
    )
    assert made.params["source_task_id"] == task_id and made.task_ids == [uuid.UUID(task_id)]
    assert primary.source_task_id == uuid.UUID(task_id) and not primary.viewed
    shot = studio.shot(shot_id)
    assert [(m.generation_id, m.timeline_frame) for m in shot.members] == [(made.id, 0)]


def test_a_result_for_a_shot_that_asks_no_position_is_added_unpositioned(studio: Studio) -> None:
    owner, project_id = funded(studio)
    shot_id = studio.create_shot(project_id, owner, "Hero")["shot_id"]
    done = run(studio, queue(studio, project_id, owner, params={"shot_id": shot_id}))
    assert done["timeline_frame"] is None
    assert studio.shot(shot_id).unpositioned_count == 1


def test_completing_an_upscale_adds_an_upscaled_variant_to_the_source(studio: Studio) -> None:
    owner, project_id = funded(studio)
    source = image(studio, project_id, owner)
    done = run(
        studio,
        queue(studio, project_id, owner, "image_upscale", params={"based_on": source}),
        "/m/big.png",
    )
    found = generation(studio, source)
    assert done["generation_id"] == source and done["variant_type"] == "upscaled"
    assert {v.variant_type for v in found.variants.values()} == {"original", "upscaled"}
    assert found.primary and found.primary.variant_type == "original"
    primary = run(
        studio,
        queue(
            studio,
            project_id,
            owner,
            "image_upscale",
            params={"based_on": source, "is_primary": True},
        ),
        "/m/p.png",
    )
    assert generation(studio, source).primary_variant_id == uuid.UUID(primary["variant_id"])


def test_create_as_generation_makes_a_new_generation_based_on_the_source(studio: Studio) -> None:
    owner, project_id = funded(studio)
    source = image(studio, project_id, owner)
    done = run(
        studio,
        queue(
            studio,
            project_id,
            owner,
            "image_inpaint",
            params={"based_on": source, "create_as_generation": True},
        ),
    )
    assert done["generation_id"] != source
    assert generation(studio, done["generation_id"]).based_on == uuid.UUID(source)


def test_a_second_result_for_the_same_child_slot_becomes_a_variant_of_that_child(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    parent = studio.create_generation(project_id, owner, "/m/parent.mp4", "video")
    params = {"parent_generation_id": parent["generation_id"], "segment_index": 1}
    first = run(
        studio,
        queue(studio, project_id, owner, "individual_travel_segment", params=params),
        "/m/seg-a.mp4",
    )
    second = run(
        studio,
        queue(studio, project_id, owner, "individual_travel_segment", params=params),
        "/m/seg-b.mp4",
    )
    child = generation(studio, first["generation_id"])
    assert (first["result"], second["result"]) == ("child", "child_variant")
    assert second["generation_id"] == first["generation_id"]
    assert (child.is_child, child.child_order, child.media_type) == (True, 1, "video")
    assert child.location == "/m/seg-b.mp4" and len(child.variants) == 2
    assert generation(studio, parent["generation_id"]).children == {1: child.id}


def test_a_named_child_gets_a_primary_variant(studio: Studio) -> None:
    owner, project_id = funded(studio)
    child = image(studio, project_id, owner)
    done = run(
        studio,
        queue(
            studio,
            project_id,
            owner,
            "individual_travel_segment",
            params={"child_generation_id": child},
        ),
        "/m/again.mp4",
    )
    assert done["generation_id"] == child
    assert generation(studio, child).location == "/m/again.mp4"


def test_a_regeneration_adds_a_regenerated_primary_variant(studio: Studio) -> None:
    owner, project_id = funded(studio)
    target = image(studio, project_id, owner)
    done = run(
        studio,
        queue(studio, project_id, owner, params={"regenerate_generation_id": target}),
        "/m/redo.png",
    )
    assert (done["generation_id"], done["variant_type"]) == (target, "regenerated")
    assert generation(studio, target).location == "/m/redo.png"


def test_a_task_that_skips_generation_creates_none_but_is_charged(studio: Studio) -> None:
    owner, project_id = funded(studio)
    before = balance(studio, owner)
    done = run(studio, queue(studio, project_id, owner, params={"skip_generation": True}))
    assert done["result"] == "none" and "generation_id" not in done
    assert balance(studio, owner) == before - Decimal("0.039")


def test_an_animation_result_is_a_video(studio: Studio) -> None:
    owner, project_id = funded(studio)
    done = run(studio, queue(studio, project_id, owner, "character_animate"), "/m/dance")
    assert generation(studio, done["generation_id"]).media_type == "video"
    made = run(
        studio, queue(studio, project_id, owner), "/m/x", result_data={"content_type": "video/mp4"}
    )
    assert generation(studio, made["generation_id"]).media_type == "video"


# -- billing and refusals ------------------------------------------------------------------
def test_a_completed_task_is_charged_once(studio: Studio) -> None:
    owner, project_id = funded(studio)
    before = balance(studio, owner)
    task_id = queue(studio, project_id, owner)
    assert run(studio, task_id)["cost"] == "0.039"
    head = studio.head_position()
    with pytest.raises(InvalidTransitionError):
        studio.complete_task(task_id, "/m/again.png")
    assert studio.head_position() == head
    assert balance(studio, owner) == before - Decimal("0.039")
    assert task(studio, task_id).cost == Decimal("0.039")


def test_completing_a_cancelled_task_is_refused_and_charges_nothing(studio: Studio) -> None:
    owner, project_id = funded(studio)
    before = balance(studio, owner)
    task_id = queue(studio, project_id, owner)
    studio.claim_task(task_id, name("w"))
    studio.cancel_task(task_id, owner)
    head = studio.head_position()
    with pytest.raises(InvalidTransitionError) as refused:
        studio.complete_task(task_id, "/m/late.png")
    assert refused.value.current_status == CANCELLED
    assert studio.head_position() == head and balance(studio, owner) == before


def test_completing_without_an_output_location_stores_nothing(studio: Studio) -> None:
    owner, project_id = funded(studio)
    task_id = queue(studio, project_id, owner)
    studio.claim_task(task_id, name("w"))
    head = studio.head_position()
    with pytest.raises(ValidationError):
        studio.complete_task(task_id, None)
    assert studio.head_position() == head and task(studio, task_id).status == IN_PROGRESS


def test_a_failed_task_costs_nothing_and_frees_its_owners_slot(studio: Studio) -> None:
    owner, project_id = funded(studio)
    before = balance(studio, owner)
    task_id = queue(studio, project_id, owner)
    studio.claim_task(task_id, name("w"))
    studio.fail_task(task_id, "boom")
    assert balance(studio, owner) == before and task(studio, task_id).cost is None
    assert studio._running(studio._batch(), owner) == 0


# -- orchestrated runs -------------------------------------------------------------------------
def travel_of(studio: Studio, images: int = 3, **params: Any) -> tuple[str, str, dict[str, Any]]:
    owner, project_id = funded(studio)
    shot_id = studio.create_shot(project_id, owner, "Travel")["shot_id"]
    for _ in range(images):
        studio.add_to_shot(shot_id, owner, image(studio, project_id, owner))
    made = studio.create_travel(
        project_id, owner, shot_id=shot_id, params={"base_prompts": ["dawn", "dusk"], **params}
    )
    return owner, shot_id, made


def test_a_travel_over_three_images_spawns_two_chained_segments_and_a_stitch(
    studio: Studio,
) -> None:
    _, shot_id, made = travel_of(studio, 3, model_name="wan")
    orchestrator = task(studio, made["orchestrator_task_id"])
    segments = [task(studio, t) for t in made["segment_task_ids"]]
    stitch = task(studio, made["stitch_task_id"])
    assert (orchestrator.status, orchestrator.worker_id) == (IN_PROGRESS, "system:orchestrator")
    assert orchestrator.child_task_ids == [s.id for s in [*segments, stitch]]
    assert [s.dependant_on for s in segments] == [[], [segments[0].id]]
    assert stitch.dependant_on == [segments[1].id] and stitch.task_type == "travel_stitch"
    shot = studio.shot(shot_id)
    frames = [generation(studio, m.generation_id).location for m in shot.positioned_images()]
    for i, segment in enumerate(segments):
        assert segment.params["segment_index"] == i
        assert segment.params["base_prompt"] == ["dawn", "dusk"][i]
        assert (segment.params["start_image_url"], segment.params["end_image_url"]) == (
            frames[i],
            frames[i + 1],
        )
        assert segment.orchestrator_task_id == orchestrator.id
        assert segment.run_id == orchestrator.run_id and segment.model_name == "wan"
        assert segment.parent_generation_id == uuid.UUID(made["parent_generation_id"])
    parent = generation(studio, made["parent_generation_id"])
    assert parent.media_type == "video" and parent.variants == {}
    assert parent.id in [m.generation_id for m in shot.members]
    commands = {
        studio.history(i)[0]["command_id"]
        for i in [*made["task_ids"], made["parent_generation_id"]]
    }
    assert len(commands) == 1  # one save


def test_a_finished_travel_completes_its_orchestrator_billed_once_on_its_childrens_seconds(
    studio: Studio,
) -> None:
    owner, _, made = travel_of(studio, 3)
    before = balance(studio, owner)
    for segment in made["segment_task_ids"]:
        assert run(studio, segment, f"/m/{segment}.mp4")["cost"] == "0"
    done = run(studio, made["stitch_task_id"], "/m/final.mp4")
    orchestrator = task(studio, made["orchestrator_task_id"])
    assert done["changed"][made["orchestrator_task_id"]] == COMPLETE
    assert (orchestrator.status, orchestrator.output_location) == (COMPLETE, "/m/final.mp4")
    parent = generation(studio, made["parent_generation_id"])
    assert parent.location == "/m/final.mp4" and len(parent.children) == 2
    assert parent.primary and parent.primary.variant_type == "travel_stitch"
    children = [task(studio, t) for t in made["task_ids"][1:]]
    expected = Decimal("0.0278") * sum(c.billable_seconds() or 0 for c in children)
    assert orchestrator.cost == expected.quantize(Decimal("0.001"))
    assert balance(studio, owner) == before - orchestrator.cost


def test_a_travel_over_a_shot_leaves_out_its_deleted_generations(studio: Studio) -> None:
    owner, project_id = funded(studio)
    shot_id = studio.create_shot(project_id, owner, "Travel")["shot_id"]
    images = [image(studio, project_id, owner) for _ in range(3)]
    for ident in images:
        studio.add_to_shot(shot_id, owner, ident)
    studio.delete_generation(images[1], owner)
    made = studio.create_travel(project_id, owner, shot_id=shot_id, params={"base_prompts": ["go"]})
    segment = task(studio, made["segment_task_ids"][0])
    assert len(made["segment_task_ids"]) == 1
    assert (segment.params["start_generation_id"], segment.params["end_generation_id"]) == (
        images[0],
        images[2],
    )
    studio.delete_generation(images[2], owner)
    with pytest.raises(InvalidParamsError):
        studio.create_travel(project_id, owner, shot_id=shot_id, params={"base_prompts": ["go"]})
    copy = studio.duplicate_shot(shot_id, owner)["shot_id"]
    assert [str(m.generation_id) for m in studio.shot(copy).members] == [images[0]]


def test_a_travel_over_two_images_is_one_segment_whose_result_is_the_parents(
    studio: Studio,
) -> None:
    _, _, made = travel_of(studio, 2)
    assert made["stitch_task_id"] is None and len(made["segment_task_ids"]) == 1
    done = run(studio, made["segment_task_ids"][0], "/m/only.mp4")
    assert generation(studio, made["parent_generation_id"]).location == "/m/only.mp4"
    assert done["parent_variant_id"]
    assert task(studio, made["orchestrator_task_id"]).status == COMPLETE


def test_a_failing_segment_fails_its_orchestrator_and_cancels_the_rest_with_n_of_m(
    studio: Studio,
) -> None:
    _, _, made = travel_of(studio, 4)  # three segments and a stitch
    first, second, third = made["segment_task_ids"]
    run(studio, first, "/m/1.mp4")
    worker = name("w")
    studio.claim_task(second, worker)
    failed = studio.fail_task(second, "out of memory", worker_id=worker)
    orchestrator = task(studio, made["orchestrator_task_id"])
    assert (orchestrator.status, orchestrator.error_message) == (FAILED, "1 of 3 segments failed")
    assert failed["changed"] == {
        second: FAILED,
        made["orchestrator_task_id"]: FAILED,
        third: CANCELLED,
        made["stitch_task_id"]: CANCELLED,
    }
    assert task(studio, first).status == COMPLETE


def test_a_failing_stitch_fails_its_orchestrator(studio: Studio) -> None:
    _, _, made = travel_of(studio, 3)
    for segment in made["segment_task_ids"]:
        run(studio, segment, f"/m/{segment}.mp4")
    studio.claim_task(made["stitch_task_id"], name("w"))
    studio.fail_task(made["stitch_task_id"], "ffmpeg died")
    orchestrator = task(studio, made["orchestrator_task_id"])
    assert (orchestrator.status, orchestrator.error_message) == (FAILED, "1 of 3 segments failed")
    assert orchestrator.cost is None


def test_cancelling_an_orchestrator_cancels_its_children_and_stops_their_workers(
    studio: Studio,
) -> None:
    owner, _, made = travel_of(studio, 3)
    worker = name("w")
    first = made["segment_task_ids"][0]
    studio.claim_task(first, worker)
    studio.cancel_task(made["orchestrator_task_id"], owner)
    assert {task(studio, t).status for t in made["task_ids"]} == {CANCELLED}
    assert studio.heartbeat(worker, [first])["stop"] == [first]


def test_join_clips_spawns_chained_transitions_and_a_final_stitch_that_completes_it(
    studio: Studio,
) -> None:
    owner, project_id = funded(studio)
    clips = [
        str(studio.create_generation(project_id, owner, f"/m/c{i}.mp4", "video")["generation_id"])
        for i in range(3)
    ]
    made = studio.create_join_clips(project_id, owner, clip_generation_ids=clips)
    segments = [task(studio, t) for t in made["segment_task_ids"]]
    final = task(studio, made["stitch_task_id"])
    assert [s.join_index for s in segments] == [0, 1]
    assert [s.params["start_video_url"] for s in segments] == ["/m/c0.mp4", "/m/c1.mp4"]
    assert final.task_type == "join_final_stitch" and final.dependant_on == [segments[1].id]
    assert final.params["clip_urls"] == ["/m/c0.mp4", "/m/c1.mp4", "/m/c2.mp4"]
    for segment in made["segment_task_ids"]:
        run(studio, segment, f"/m/{segment}.mp4")
    run(studio, made["stitch_task_id"], "/m/joined.mp4")
    assert task(studio, made["orchestrator_task_id"]).status == COMPLETE
    assert generation(studio, made["parent_generation_id"]).location == "/m/joined.mp4"


def test_a_travel_with_an_idempotency_key_is_made_once(studio: Studio) -> None:
    owner, project_id = funded(studio)
    urls = ["/m/a.png", "/m/b.png", "/m/c.png"]
    made = studio.create_travel(project_id, owner, image_urls=urls, idempotency_key="t1")
    head = studio.head_position()
    again = studio.create_travel(project_id, owner, image_urls=urls, idempotency_key="t1")
    assert again["task_ids"] == made["task_ids"] and again["replayed"]
    assert studio.head_position() == head


def test_a_lost_segment_requeues_within_its_run(studio: Studio) -> None:
    _, _, made = travel_of(studio, 3)
    first = made["segment_task_ids"][0]
    studio.claim_task(first, name("w"))
    studio.sweep_lost_workers(datetime.now(UTC) + timedelta(minutes=3))
    assert task(studio, first).status == QUEUED
    assert task(studio, made["orchestrator_task_id"]).status == IN_PROGRESS


def test_the_parent_of_a_run_has_no_media_until_its_stitch(studio: Studio) -> None:
    _, shot_id, made = travel_of(studio, 3)
    shot: Shot = studio.shot(shot_id)
    parent = generation(studio, made["parent_generation_id"])
    member = next(m for m in shot.members if m.generation_id == parent.id)
    assert member.timeline_frame is None and member.is_video and parent.location is None
    assert isinstance(task(studio, made["stitch_task_id"]), Task)

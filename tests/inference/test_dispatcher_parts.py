"""The dispatcher's pure parts: which task types an actor runs, actor specs from the
environment, where a task's inputs come from, and which errors a retry may cure."""

from __future__ import annotations

import pytest

from darkroom.dispatch import parse_actors
from inference.actors import ActorSpec, default_specs
from inference.errors import InvalidInputError, MediaNotFoundError
from inference.inputs import InputFetchError, input_locations
from inference.outcomes import describe, retryable


def test_an_actor_runs_the_task_types_of_its_models_and_stitching() -> None:
    video = ActorSpec(("image_to_video",))
    assert {"travel_segment", "join_clips_segment", "character_animate"} <= video.task_types
    assert {"travel_stitch", "join_final_stitch"} <= video.task_types  # no model needed
    assert "image_generation" not in video.task_types
    assert "image_upscale" in ActorSpec(("upscale",)).task_types


def test_by_default_every_model_has_its_own_actor_and_image_to_image_shares_text_to_image() -> None:
    names = [spec.name for spec in default_specs()]
    assert names == ["text_to_image+image_to_image", "inpaint", "upscale", "image_to_video"]
    every = set().union(*(spec.task_types for spec in default_specs()))
    assert {"image_generation", "magic_edit", "image_inpaint", "individual_travel_segment"} <= every


def test_actor_specs_are_read_from_their_environment_form() -> None:
    specs = parse_actors("text_to_image+image_to_image:1, image_to_video:2,media")
    assert [(s.models, s.count) for s in specs] == [
        (("text_to_image", "image_to_image"), 1),
        (("image_to_video",), 2),
        ((), 1),
    ]
    assert specs[2].name == "media" and specs[2].task_types == {
        "travel_stitch",
        "join_final_stitch",
    }


def test_single_file_params_become_the_backends_input_names() -> None:
    params = {"image_url": "/media/a.png", "mask_url": "/media/m.png", "prompt": "x"}
    assert input_locations("image_inpaint", params, lambda _: None) == {
        "image": "/media/a.png",
        "mask": "/media/m.png",
    }
    segment = {"start_image_url": "/media/1.png", "end_image_url": "https://cdn/2.png"}
    assert input_locations("travel_segment", segment, lambda _: None) == {
        "start_image": "/media/1.png",
        "end_image": "https://cdn/2.png",
    }


def test_a_travel_stitch_reads_its_segments_outputs_in_their_order() -> None:
    outputs = {"s0": "/media/0.mp4", "s1": "/media/1.mp4", "s2": "/media/2.mp4"}
    found = input_locations("travel_stitch", {"segment_task_ids": ["s0", "s1", "s2"]}, outputs.get)
    assert list(found.items()) == [
        ("segment_0", "/media/0.mp4"),
        ("segment_1", "/media/1.mp4"),
        ("segment_2", "/media/2.mp4"),
    ]


def test_a_join_stitch_puts_each_transition_between_the_clips_it_joins() -> None:
    params = {
        "clip_urls": ["/media/a.mp4", "/media/b.mp4", "/media/c.mp4"],
        "segment_task_ids": ["t0", "t1"],
    }
    found = input_locations(
        "join_final_stitch", params, {"t0": "/media/ab.mp4", "t1": "/media/bc.mp4"}.get
    )
    assert list(found.values()) == [
        "/media/a.mp4",
        "/media/ab.mp4",
        "/media/b.mp4",
        "/media/bc.mp4",
        "/media/c.mp4",
    ]


def test_a_stitch_whose_segment_has_no_output_is_bad_input() -> None:
    with pytest.raises(InvalidInputError):
        input_locations("travel_stitch", {"segment_task_ids": ["gone"]}, lambda _: None)


def test_errors_say_whether_running_the_task_again_may_cure_them() -> None:
    assert not retryable(MediaNotFoundError("no media at /media/x.png"))
    assert not retryable(InvalidInputError("num_frames must be in [1, 1025]"))
    assert retryable(InputFetchError("could not fetch https://cdn/x.png"))
    assert retryable(RuntimeError("CUDA out of memory"))
    assert describe(ValueError("bad\nsecond line")) == "ValueError: bad"

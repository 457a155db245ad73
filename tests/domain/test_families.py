"""The task-family registry: a family is one registration, its tables follow from it,
and taking it back leaves nothing behind."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from domain import families
from domain.catalogue import DEFAULT_CATALOGUE, FAMILIES, TaskTypeCatalogue
from domain.errors import BatchTooLargeError, ListLengthsError, ValidationError
from domain.families.base import (
    IMAGE_TO_VIDEO,
    Family,
    FamilyInput,
    ProjectFacts,
    TaskSpec,
    one_task,
)
from domain.families.images import ImageGenerationInput
from domain.families.travel import TravelInput
from domain.tasktype import VIDEO, gpu_type


@dataclass(frozen=True, kw_only=True)
class WipeInput(FamilyInput):
    start_image_url: str
    seconds: int = 2


def wipe(data: WipeInput, project: ProjectFacts) -> list[TaskSpec]:
    return one_task("wipe", data.params(resolution=project.resolution))


WIPE = Family(
    "wipe",
    WipeInput,
    (
        gpu_type(
            "wipe",
            "generation",
            "0.01",
            pipeline=IMAGE_TO_VIDEO,
            media=VIDEO,
            inputs={"start_image_url": "start_image", "wipe_mask_url": "wipe_mask"},
        ),
    ),
    expand=wipe,
)


def test_a_registered_family_is_in_every_derived_table_and_gone_after() -> None:
    with families.registered(WIPE):
        assert families.FAMILIES["wipe"] is WIPE
        assert DEFAULT_CATALOGUE["wipe"].pipeline == IMAGE_TO_VIDEO
        assert TaskTypeCatalogue().resolve("wipe").media == VIDEO
        assert families.pipelines()["wipe"] == IMAGE_TO_VIDEO
        assert families.single_inputs()["wipe_mask_url"] == "wipe_mask"
        assert "wipe" in families.video_types()
    assert "wipe" not in families.FAMILIES and "wipe" not in DEFAULT_CATALOGUE
    assert "wipe_mask_url" not in families.single_inputs()


def test_a_family_expands_its_typed_input_with_the_projects_facts() -> None:
    data = WipeInput.from_params({"start_image_url": "/media/a.png", "tint": "blue"})
    [spec] = WIPE.tasks(data, ProjectFacts(aspect_ratio="1:1"))
    assert spec.task_type == "wipe"
    assert spec.params == {
        "start_image_url": "/media/a.png",
        "seconds": 2,
        "tint": "blue",  # a field the family does not name rides along
        "resolution": "670x670",
    }


def test_a_second_family_of_a_name_or_a_task_type_already_taken_is_refused() -> None:
    with families.registered(WIPE):
        with pytest.raises(ValidationError, match="'wipe' is already registered"):
            families.register(WIPE)
        other = Family("wipe_again", WipeInput, WIPE.types, expand=wipe)
        with pytest.raises(ValidationError, match="'wipe' already belongs to a family"):
            families.register(other)


def test_a_param_that_already_names_another_input_is_refused() -> None:
    row = gpu_type("blur", "generation", "0.01", inputs={"image_url": "blur_source"})
    with pytest.raises(ValidationError, match="'image_url' is input 'image'"):
        families.register(Family("blur", WipeInput, (row,), expand=wipe))
    assert "blur" not in families.FAMILIES


def test_the_tables_derived_from_the_built_in_families_are_the_ones_once_listed_by_hand() -> None:
    assert families.stitches() == ("join_final_stitch", "travel_stitch")
    assert families.single_inputs() == {
        "image_url": "image",
        "mask_url": "mask",
        "character_image_url": "image",
        "start_video_url": "clip_1",
        "end_video_url": "clip_2",
        "start_image_url": "start_image",
        "end_image_url": "end_image",
        "structure_video_path": "structure_video",
    }
    assert dict(FAMILIES) == {
        "join_clips": ("join_clips_orchestrator", "join_clips_segment", "join_final_stitch"),
        "travel_between_images": ("travel_orchestrator", "travel_segment", "travel_stitch"),
    }


def test_the_domain_input_holds_the_family_rules() -> None:
    with pytest.raises(BatchTooLargeError, match="is 102; at most 100"):
        ImageGenerationInput(prompts=["a"] * 51, images_per_prompt=2)
    with pytest.raises(ListLengthsError, match="base_prompts has 2 items; give 1 or 3"):
        TravelInput(image_urls=["a", "b", "c", "d"], base_prompts=["x", "y"])
    travel = TravelInput(image_urls=["a", "b", "c"], structure_video_path="/media/g.mp4")
    assert travel.base_prompts == ["", ""] and travel.structure_video_type == "flow"

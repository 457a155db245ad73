"""Edits of one image: inpaint, annotated edit (a mask and a prompt) and upscale."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import ValidationError
from domain.families.base import (
    IMAGE_TO_IMAGE,
    INPAINT,
    UPSCALE,
    Family,
    FamilyInput,
    ProjectFacts,
    TaskSpec,
    one_task,
    pick_seed,
)
from domain.tasktype import PROCESSING, api_type

NEEDS_A_HOME = "give `based_on` (the result becomes a variant of it) or set `create_as_generation`"
MASKED = {"image_url": "image", "mask_url": "mask"}


@dataclass(frozen=True, kw_only=True)
class MaskedEditInput(FamilyInput):
    image_url: str
    mask_url: str
    prompt: str
    based_on: str | None = None
    create_as_generation: bool = False
    shot_id: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.based_on is None and not self.create_as_generation:
            raise ValidationError(NEEDS_A_HOME)


def inpaint(data: MaskedEditInput, project: ProjectFacts) -> list[TaskSpec]:
    return one_task("image_inpaint", data.params(seed=pick_seed(data.seed, 0)))


def annotated_edit(data: MaskedEditInput, project: ProjectFacts) -> list[TaskSpec]:
    return one_task("annotated_image_edit", data.params(seed=pick_seed(data.seed, 0)))


@dataclass(frozen=True, kw_only=True)
class ImageUpscaleInput(FamilyInput):
    image_url: str
    based_on: str | None = None
    scale_factor: int = 2
    is_primary: bool = False


def upscale(data: ImageUpscaleInput, project: ProjectFacts) -> list[TaskSpec]:
    return one_task("image_upscale", data.params())


IMAGE_INPAINT = Family(
    "image_inpaint",
    MaskedEditInput,
    (
        api_type(
            "image_inpaint",
            PROCESSING,
            "0.0020",
            variant_type="inpaint",
            pipeline=INPAINT,
            inputs=MASKED,
        ),
    ),
    expand=inpaint,
)
ANNOTATED_IMAGE_EDIT = Family(
    "annotated_image_edit",
    MaskedEditInput,
    (
        api_type(
            "annotated_image_edit",
            PROCESSING,
            "0.0020",
            variant_type="annotated_edit",
            pipeline=IMAGE_TO_IMAGE,
            inputs=MASKED,
        ),
    ),
    expand=annotated_edit,
)
IMAGE_UPSCALE = Family(
    "image_upscale",
    ImageUpscaleInput,
    (
        api_type(
            "image_upscale",
            PROCESSING,
            "0.0015",
            variant_type="upscaled",
            pipeline=UPSCALE,
            inputs={"image_url": "image"},
        ),
    ),
    expand=upscale,
)

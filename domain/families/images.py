"""Image families: generation from prompts (and seed 000's Edit Travel, its batch form on
an input image) and the magic edit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.families.base import (
    IMAGE_TO_IMAGE,
    TEXT_TO_IMAGE,
    Family,
    FamilyInput,
    ProjectFacts,
    TaskSpec,
    check_batch,
    pick_seed,
)
from domain.tasktype import GENERATION, TaskType, api_type


@dataclass(frozen=True, kw_only=True)
class ImageGenerationInput(FamilyInput):
    prompts: list[Any]  # a prompt's text, or a prompt object with `full_prompt`
    images_per_prompt: int = 1
    negative_prompt: str | None = None
    seed: int | None = None
    loras: list[Any] = field(default_factory=list)
    resolution: str | None = None
    model_name: str | None = None
    shot_id: str | None = None
    add_in_position: bool = False

    def __post_init__(self) -> None:
        check_batch(len(self.prompts), self.images_per_prompt)


def generate(data: ImageGenerationInput, project: ProjectFacts) -> list[TaskSpec]:
    base = data.params(resolution=data.resolution or project.resolution)
    base.pop("prompts", None)
    base.pop("images_per_prompt", None)
    specs = []
    for p, prompt in enumerate(data.prompts):
        text = prompt if isinstance(prompt, str) else prompt["full_prompt"]
        for i in range(data.images_per_prompt):
            seed = pick_seed(data.seed, p * data.images_per_prompt + i)
            specs.append(
                TaskSpec(
                    task_type="image_generation", params={**base, "prompt": text, "seed": seed}
                )
            )
    return specs


@dataclass(frozen=True, kw_only=True)
class EditTravelInput(ImageGenerationInput):
    """Seed 000's Edit Travel tool: one input image (`image_url`) edited by each prompt,
    `images_per_prompt` times (image generation's batch form); every result is a new
    generation. `model` picks the catalogue type: `edit_travel_kontext` or
    `edit_travel_flux`."""

    image_url: str
    model: str = "kontext"


def edit_travel(data: EditTravelInput, project: ProjectFacts) -> list[TaskSpec]:
    specs = generate(data, project)
    for spec in specs:
        spec.params.pop("model", None)
        spec.task_type = f"edit_travel_{data.model}"
    return specs


@dataclass(frozen=True, kw_only=True)
class MagicEditInput(FamilyInput):
    prompt: str
    image_url: str
    based_on: str | None = None
    num_images: int = 1
    seed: int | None = None
    resolution: str | None = None
    shot_id: str | None = None
    is_primary: bool = False


def magic_edit(data: MagicEditInput, project: ProjectFacts) -> list[TaskSpec]:
    base = data.params(resolution=data.resolution or project.resolution)
    base.pop("num_images", None)
    return [
        TaskSpec(task_type="magic_edit", params={**base, "seed": pick_seed(data.seed, i)})
        for i in range(data.num_images)
    ]


def prompt_edit(name: str, display_name: str, model_name: str, **row: Any) -> TaskType:
    """A catalogue row of an image edited by a prompt (an API task on image-to-image)."""
    return api_type(
        name,
        GENERATION,
        "0.039",
        display_name=display_name,
        model_name=model_name,
        pipeline=IMAGE_TO_IMAGE,
        inputs={"image_url": "image"},
        **row,
    )


IMAGE_GENERATION = Family(
    "image_generation",
    ImageGenerationInput,
    (
        api_type(
            "image_generation",
            GENERATION,
            "0.039",
            display_name="Image generation",
            pipeline=TEXT_TO_IMAGE,
        ),
        api_type(
            "qwen_image", GENERATION, "0.039", model_name="qwen_image", pipeline=TEXT_TO_IMAGE
        ),
        api_type(
            "z_image_turbo",
            GENERATION,
            "0.0065",
            model_name="z_image_turbo",
            pipeline=TEXT_TO_IMAGE,
        ),
    ),
    expand=generate,
    batch=True,
)
# The seed has no published rate for magic edit; priced like its qwen sibling.
MAGIC_EDIT = Family(
    "magic_edit",
    MagicEditInput,
    (prompt_edit("magic_edit", "", "qwen_image_edit", variant_type="magic_edit"),),
    expand=magic_edit,
    batch=True,
)
# Seed 000's Edit Travel tool: an input image edited by text prompts (Fal's
# flux-pro/kontext, or Flux), each result a new generation. No rate was published:
# priced like the other prompt edits (magic_edit).
EDIT_TRAVEL = Family(
    "edit_travel",
    EditTravelInput,
    (
        prompt_edit("edit_travel_kontext", "Edit travel (Kontext)", "flux_kontext"),
        prompt_edit("edit_travel_flux", "Edit travel (Flux)", "flux"),
    ),
    expand=edit_travel,
    batch=True,
)

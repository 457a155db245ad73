"""Character animation: a character image moved by a motion video."""

from __future__ import annotations

from dataclasses import dataclass

from domain.families.base import (
    IMAGE_TO_VIDEO,
    Family,
    FamilyInput,
    ProjectFacts,
    TaskSpec,
    one_task,
)
from domain.tasktype import GENERATION, VIDEO, api_type


@dataclass(frozen=True, kw_only=True)
class CharacterAnimateInput(FamilyInput):
    character_image_url: str
    motion_video_url: str
    prompt: str | None = None
    mode: str = "animate"
    resolution: str | None = None
    shot_id: str | None = None


def animate(data: CharacterAnimateInput, project: ProjectFacts) -> list[TaskSpec]:
    return one_task(
        "character_animate", data.params(resolution=data.resolution or project.resolution)
    )


CHARACTER_ANIMATE = Family(
    "character_animate",
    CharacterAnimateInput,
    (
        api_type(
            "character_animate",
            GENERATION,
            "0.20",
            display_name="Animate character",
            pipeline=IMAGE_TO_VIDEO,
            media=VIDEO,
            inputs={"character_image_url": "image"},
        ),
    ),
    expand=animate,
)

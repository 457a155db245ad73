"""Join clips: a run (an orchestrator, one transition per consecutive pair of clips, a
final stitch of clips and transitions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.errors import ValidationError
from domain.families.base import (
    IMAGE_TO_VIDEO,
    Family,
    FamilyInput,
    ProjectFacts,
    expand,
    run_params,
    video_work,
)
from domain.tasktype import GENERATION, ORCHESTRATION, PROCESSING, VIDEO, gpu_type


@dataclass(frozen=True, kw_only=True)
class JoinClipsInput(FamilyInput):
    clip_urls: list[str] | None = None
    clip_generation_ids: list[str] | None = None
    prompts: list[str] = field(default_factory=lambda: [""])
    frames_per_transition: int = 24
    resolution: str | None = None
    model_name: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", transition_prompts(self))


def transition_prompts(data: Any) -> list[str]:
    """One prompt per transition (one for all, or one each)."""
    clips = data.clip_generation_ids or data.clip_urls
    if not clips:
        raise ValidationError("name the clips: `clip_urls` or `clip_generation_ids` (2 or more)")
    return expand(data.prompts, len(clips) - 1, "prompts")


def join_params(data: JoinClipsInput, project: ProjectFacts) -> dict[str, Any]:
    return run_params(data, project, ("clip_urls", "clip_generation_ids"))


JOIN_CLIPS = Family(
    "join_clips",
    JoinClipsInput,
    (
        gpu_type(
            "join_clips_orchestrator",
            ORCHESTRATION,
            "0.0278",
            display_name="Join clips",
            media=VIDEO,
        ),
        video_work(
            "join_clips_segment",
            PROCESSING,
            "0.0278",
            pipeline=IMAGE_TO_VIDEO,
            inputs={"start_video_url": "clip_1", "end_video_url": "clip_2"},
        ),
        video_work("join_final_stitch", GENERATION, "0.005", stitch=True),
    ),
    run=True,
    run_params=join_params,
    run_types=("join_clips_orchestrator", "join_clips_segment", "join_final_stitch"),
)

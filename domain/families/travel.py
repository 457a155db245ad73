"""Travel: video between images. The run (`travel_between_images`: an orchestrator, one
segment per consecutive pair, a stitch) and one segment on its own
(`individual_travel_segment`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.errors import ValidationError
from domain.families.base import (
    IMAGE_TO_VIDEO,
    STRUCTURE_DEFAULTS,
    Family,
    FamilyInput,
    ProjectFacts,
    TaskSpec,
    expand,
    one_task,
    pick_seed,
    run_params,
    video_work,
)
from domain.tasktype import (
    GENERATION,
    ORCHESTRATION,
    PROCESSING,
    SEED_DEFAULT_RATE,
    VIDEO,
    gpu_type,
)

SEGMENT_INPUTS = {
    "start_image_url": "start_image",
    "end_image_url": "end_image",
    "structure_video_path": "structure_video",  # seed 001's VACE guide
}


@dataclass(frozen=True, kw_only=True)
class VideoGuidance(FamilyInput):
    """Seed 001's structure-video group (VACE mode) and the motion group. With a
    `structure_video_path` the seed's defaults fill the structure fields not sent."""

    structure_video_path: str | None = None
    structure_video_treatment: str | None = None
    structure_video_motion_strength: float | None = None
    structure_video_type: str | None = None
    amount_of_motion: float = 0.5
    motion_mode: str = "basic"
    phase_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.structure_video_path is not None:
            for key, default in structure_defaults(self).items():
                object.__setattr__(self, key, default)


def structure_defaults(guidance: Any) -> dict[str, Any]:
    """The seed's structure defaults for the fields a guidance with a path left unset."""
    return {k: v for k, v in STRUCTURE_DEFAULTS.items() if getattr(guidance, k) is None}


@dataclass(frozen=True, kw_only=True)
class TravelInput(VideoGuidance):
    image_urls: list[str] | None = None
    image_generation_ids: list[str] | None = None
    shot_id: str | None = None
    base_prompts: list[str] = field(default_factory=lambda: [""])
    negative_prompts: list[str] | None = None
    segment_frames: list[int] = field(default_factory=lambda: [81])
    frame_overlap: list[int] = field(default_factory=lambda: [10])
    resolution: str | None = None
    model_name: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, values in per_segment(self).items():
            object.__setattr__(self, key, values)


def per_segment(data: Any) -> dict[str, list[Any]]:
    """The per-segment lists of a travel, one value per segment (a shot's image count
    is known only to the studio: then nothing is expanded here)."""
    images = data.image_generation_ids or data.image_urls
    if not images and data.shot_id is None:
        raise ValidationError("name the images: `image_urls`, `image_generation_ids` or `shot_id`")
    if not images:
        return {}
    segments = len(images) - 1
    found = {
        "base_prompts": expand(data.base_prompts, segments, "base_prompts"),
        "segment_frames": expand(data.segment_frames, segments, "segment_frames"),
        "frame_overlap": expand(data.frame_overlap, segments, "frame_overlap"),
    }
    if data.negative_prompts:
        found["negative_prompts"] = expand(data.negative_prompts, segments, "negative_prompts")
    return found


def travel_params(data: TravelInput, project: ProjectFacts) -> dict[str, Any]:
    return run_params(data, project, ("image_urls", "image_generation_ids"))


@dataclass(frozen=True, kw_only=True)
class IndividualSegmentInput(VideoGuidance):
    start_image_url: str
    end_image_url: str
    prompt: str = ""
    negative_prompt: str | None = None
    num_frames: int = 81
    resolution: str | None = None
    model_name: str | None = None
    seed: int | None = None
    shot_id: str | None = None
    parent_generation_id: str | None = None
    child_generation_id: str | None = None
    segment_index: int | None = None


def individual_segment(data: IndividualSegmentInput, project: ProjectFacts) -> list[TaskSpec]:
    return one_task(
        "individual_travel_segment",
        data.params(resolution=data.resolution or project.resolution, seed=pick_seed(data.seed, 0)),
    )


TRAVEL_BETWEEN_IMAGES = Family(
    "travel_between_images",
    TravelInput,
    (
        gpu_type(
            "travel_orchestrator",
            ORCHESTRATION,
            "0.0278",
            display_name="Travel between images",
            media=VIDEO,
        ),
        video_work(
            "travel_segment", PROCESSING, "0.0278", pipeline=IMAGE_TO_VIDEO, inputs=SEGMENT_INPUTS
        ),
        # No rate was published for the stitch; the seed's per-second fallback applies.
        video_work("travel_stitch", PROCESSING, str(SEED_DEFAULT_RATE), stitch=True),
    ),
    run=True,
    run_params=travel_params,
    run_types=("travel_orchestrator", "travel_segment", "travel_stitch"),
)
INDIVIDUAL_TRAVEL_SEGMENT = Family(
    "individual_travel_segment",
    IndividualSegmentInput,
    (
        video_work(
            "individual_travel_segment",
            GENERATION,
            "0.0278",
            variant_type="individual_segment",
            pipeline=IMAGE_TO_VIDEO,
            inputs=SEGMENT_INPUTS,
        ),
    ),
    expand=individual_segment,
)

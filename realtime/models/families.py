"""Task families on the wire: each family's input as pydantic validates it (the OpenAPI
document's components), mapped onto the domain family's typed input
(`domain/families`), which holds the rules: seeds, sizes, batch caps, expansion into
tasks. `FAMILIES` and `FamilyName` follow the domain's registry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain import families
from domain.families.base import (
    MAX_BATCH,
    Family,
    ProjectFacts,
    check_batch,
)
from domain.families.edits import NEEDS_A_HOME
from domain.families.join import transition_prompts
from domain.families.travel import per_segment, structure_defaults
from realtime.models.common import (
    Json,
    Resolution,
    Seed,
    Stripped,
    Text,
    Url,
    alias,
    one_of_sent,
)
from realtime.models.family_base import (
    FamilyInput,
    domain_rules,
    generated,
)

__all__ = ["MAX_BATCH"]


class Lora(BaseModel):
    """A LoRA a task applies: one of the user's resources (`resource_id`, checked and
    resolved to its file at task creation), or a `path` (a media location or URL)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra=one_of_sent(
            "resource_id", "path", kinds={"resource_id": "string", "path": "string"}
        ),
    )
    resource_id: UUID | None = None
    path: Url | None = None
    strength: float = Field(1.0, ge=-10, le=10)

    @model_validator(mode="after")
    def names_a_file(self) -> Lora:
        if self.resource_id is None and self.path is None:
            raise ValueError("a LoRA needs a resource_id or a path")
        return self


class PromptSpec(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str | None = Field(None, max_length=200)
    full_prompt: Annotated[str, Stripped(20_000)] = Field(
        validation_alias=alias("fullPrompt", "full_prompt", "prompt")
    )
    short_prompt: str | None = Field(
        None, max_length=500, validation_alias=alias("shortPrompt", "short_prompt")
    )


def batch_bound() -> dict[str, Any]:
    """prompts * images_per_prompt <= MAX_BATCH, as JSON Schema can say it: with k images
    per prompt, at most MAX_BATCH // k prompts."""
    forms: list[dict[str, Any]] = [{"properties": {"images_per_prompt": {"maximum": 1}}}]
    forms += [
        {
            "required": ["images_per_prompt"],
            "properties": {
                "images_per_prompt": {"minimum": k, "maximum": k},
                "prompts": {"maxItems": MAX_BATCH // k},
            },
        }
        for k in range(2, 17)
    ]
    return {"anyOf": forms}


class ImageGenerationInput(FamilyInput):
    model_config = ConfigDict(json_schema_extra=batch_bound())

    family: ClassVar[str] = "image_generation"

    prompts: list[PromptSpec | Annotated[str, Stripped(20_000)]] = Field(
        min_length=1, max_length=MAX_BATCH
    )
    images_per_prompt: int = Field(
        1, ge=1, le=16, validation_alias=alias("images_per_prompt", "imagesPerPrompt")
    )
    negative_prompt: Text | None = None
    seed: Seed | None = None
    loras: list[Lora] = Field(default_factory=list, max_length=20)
    resolution: Resolution | None = None
    model_name: str | None = Field(None, max_length=200)
    shot_id: UUID | None = None
    add_in_position: bool = False

    @model_validator(mode="after")
    def batch_is_bounded(self) -> ImageGenerationInput:
        with domain_rules():
            check_batch(len(self.prompts), self.images_per_prompt)
        return self


class MagicEditInput(FamilyInput):
    family: ClassVar[str] = "magic_edit"

    prompt: Annotated[str, Stripped(20_000)]
    image_url: Url
    based_on: UUID | None = None
    num_images: int = Field(1, ge=1, le=16, validation_alias=alias("num_images", "numImages"))
    seed: Seed | None = None
    resolution: Resolution | None = None
    shot_id: UUID | None = None
    is_primary: bool = False


class _EditInput(FamilyInput):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["based_on"], "properties": {"based_on": {"type": "string"}}},
                {
                    "required": ["create_as_generation"],
                    "properties": {"create_as_generation": {"const": True}},
                },
            ]
        }
    )

    image_url: Url
    mask_url: Url
    prompt: Annotated[str, Stripped(20_000)]
    based_on: UUID | None = None
    create_as_generation: bool = False
    shot_id: UUID | None = None
    seed: Seed | None = None

    @model_validator(mode="after")
    def needs_a_home(self) -> _EditInput:
        if self.based_on is None and not self.create_as_generation:
            raise ValueError(NEEDS_A_HOME)
        return self


class ImageInpaintInput(_EditInput):
    family: ClassVar[str] = "image_inpaint"


class AnnotatedImageEditInput(_EditInput):
    family: ClassVar[str] = "annotated_image_edit"


class VideoGuidance(FamilyInput):
    """Seed 001's structure-video group (`VideoStructureApiParams`, VACE mode) and the
    motion group, for the travel families. With a `structure_video_path` the seed's
    defaults fill the structure fields not sent (the seed's client sends the group
    only with a path). What the tiny backend applies: docs/API.md, "Structure video
    and motion"."""

    structure_video_path: Url | None = None
    structure_video_treatment: Literal["adjust", "clip"] | None = None
    structure_video_motion_strength: float | None = Field(None, ge=0, le=2)
    structure_video_type: Literal["flow", "canny", "depth"] | None = None
    amount_of_motion: float = Field(0.5, ge=0, le=1)
    motion_mode: Literal["basic", "presets", "advanced"] = "basic"
    phase_config: Json | None = None

    @model_validator(mode="after")
    def structure_defaults(self) -> VideoGuidance:
        if self.structure_video_path is not None:
            for key, default in structure_defaults(self).items():
                setattr(self, key, default)
        return self


class ImageUpscaleInput(FamilyInput):
    family: ClassVar[str] = "image_upscale"

    image_url: Url
    based_on: UUID | None = None
    scale_factor: Literal[2, 4] = 2
    is_primary: bool = False


class CharacterAnimateInput(FamilyInput):
    family: ClassVar[str] = "character_animate"

    character_image_url: Url
    motion_video_url: Url
    prompt: Text | None = None
    mode: Literal["animate", "replace"] = "animate"
    resolution: Resolution | None = None
    shot_id: UUID | None = None


class RunInput(FamilyInput):
    """An orchestrated run (travel, join): the domain spawns its segments and stitch."""

    inputs_field: ClassVar[str]
    ids_field: ClassVar[str]

    def run_params(self, project: ProjectFacts) -> Json:
        """Params of the run; the inputs and shot travel beside them, not inside."""
        run_params = self.domain().run_params
        assert run_params is not None, f"{self.family} is a run"
        return run_params(self.to_domain(), project)


class JoinClipsInput(RunInput):
    model_config = ConfigDict(
        json_schema_extra=one_of_sent(
            "clip_urls",
            "clip_generation_ids",
            kinds={"clip_urls": "array", "clip_generation_ids": "array"},
        )
    )

    family: ClassVar[str] = "join_clips"
    inputs_field: ClassVar[str] = "clip_urls"
    ids_field: ClassVar[str] = "clip_generation_ids"

    clip_urls: list[Url] | None = Field(None, min_length=2, max_length=50)
    clip_generation_ids: list[UUID] | None = Field(None, min_length=2, max_length=50)
    prompts: list[Text] = Field(default_factory=lambda: [""], min_length=1, max_length=50)
    frames_per_transition: int = Field(24, ge=1, le=1000)
    resolution: Resolution | None = None
    model_name: str | None = Field(None, max_length=200)
    seed: Seed | None = None

    @model_validator(mode="after")
    def names_its_clips(self) -> JoinClipsInput:
        with domain_rules():
            self.prompts = transition_prompts(self)
        return self


class TravelBetweenImagesInput(RunInput, VideoGuidance):
    model_config = ConfigDict(
        json_schema_extra=one_of_sent(
            "image_urls",
            "image_generation_ids",
            "shot_id",
            kinds={"image_urls": "array", "image_generation_ids": "array", "shot_id": "string"},
        )
    )

    family: ClassVar[str] = "travel_between_images"
    inputs_field: ClassVar[str] = "image_urls"
    ids_field: ClassVar[str] = "image_generation_ids"

    image_urls: list[Url] | None = Field(None, min_length=2, max_length=100)
    image_generation_ids: list[UUID] | None = Field(None, min_length=2, max_length=100)
    shot_id: UUID | None = Field(
        None, description="travel through this shot's positioned images (instead of urls or ids)"
    )
    base_prompts: list[Text] = Field(default_factory=lambda: [""], min_length=1, max_length=100)
    negative_prompts: list[Text] | None = Field(None, max_length=100)
    segment_frames: list[Annotated[int, Field(ge=1, le=1000)]] = Field(
        default_factory=lambda: [81], min_length=1, max_length=100
    )
    frame_overlap: list[Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=lambda: [10], min_length=1, max_length=100
    )
    resolution: Resolution | None = None
    model_name: str | None = Field(None, max_length=200)
    seed: Seed | None = None

    @model_validator(mode="after")
    def one_per_segment(self) -> TravelBetweenImagesInput:
        with domain_rules():
            for key, values in per_segment(self).items():
                setattr(self, key, values)
        return self


class IndividualTravelSegmentInput(VideoGuidance):
    family: ClassVar[str] = "individual_travel_segment"

    start_image_url: Url
    end_image_url: Url
    prompt: Text = ""
    negative_prompt: Text | None = None
    num_frames: int = Field(81, ge=1, le=1000)
    resolution: Resolution | None = None
    model_name: str | None = Field(None, max_length=200)
    seed: Seed | None = None
    shot_id: UUID | None = None
    parent_generation_id: UUID | None = None
    child_generation_id: UUID | None = None
    segment_index: int | None = Field(None, ge=0, le=10_000)


class EditTravelInput(ImageGenerationInput):
    """Seed 000's Edit Travel tool: one input image (`image_url`) edited by each prompt,
    `images_per_prompt` times (image generation's batch form); every result is a new
    generation. `model` picks the catalogue type: `edit_travel_kontext` or
    `edit_travel_flux`."""

    family: ClassVar[str] = "edit_travel"

    image_url: Url
    model: Literal["kontext", "flux"] = "kontext"


# The wire form of each built-in family (the OpenAPI document's components); a family
# registered without one gets a model generated from its domain input.
WRITTEN: dict[str, type[FamilyInput]] = {
    model.family: model
    for model in (
        ImageGenerationInput,
        MagicEditInput,
        ImageInpaintInput,
        AnnotatedImageEditInput,
        ImageUpscaleInput,
        CharacterAnimateInput,
        JoinClipsInput,
        TravelBetweenImagesInput,
        IndividualTravelSegmentInput,
        EditTravelInput,
    )
}
_GENERATED: dict[Family, type[FamilyInput]] = {}


def family_model(name: str) -> type[FamilyInput]:
    """The wire model of a registered family."""
    family = families.FAMILIES[name]
    if name in WRITTEN:
        return WRITTEN[name]
    if family not in _GENERATED:
        _GENERATED[family] = generated(family)
    return _GENERATED[family]


class FamilyModels(Mapping[str, type[FamilyInput]]):
    """Family name → wire model, for every registered family (live)."""

    def __getitem__(self, name: str) -> type[FamilyInput]:
        return family_model(name)

    def __iter__(self) -> Iterator[str]:
        return iter(families.FAMILIES)

    def __len__(self) -> int:
        return len(families.FAMILIES)


FAMILIES: Mapping[str, type[FamilyInput]] = FamilyModels()

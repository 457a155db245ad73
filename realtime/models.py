"""Pydantic wire models: request bodies, query strings and response shapes.

Request models validate at the edge (422 with field paths); the domain still
decides the rules. Task families (seed 001's unified task creation) have one
input model each; `TaskSpec`s are what a family input turns into.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

# A string no byte of which is NUL (PostgreSQL text and jsonb cannot store it; the edge
# refuses it in any body or query value), and one that also has a non-space character.
NO_NUL = "^[^\\u0000]*$"
NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"


@dataclass(frozen=True)
class Stripped:
    """A string that is stripped of surrounding whitespace, its length limits holding as
    sent (a label of 101 characters is refused even if it strips to 100); a required one
    must hold a non-space character. The schema says the same (`pattern`)."""

    max_length: int
    required: bool = True

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return core_schema.no_info_after_validator_function(
            self.strip,
            core_schema.str_schema(
                min_length=1 if self.required else 0, max_length=self.max_length
            ),
        )

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {
            "type": "string",
            "minLength": 1 if self.required else 0,
            "maxLength": self.max_length,
            "pattern": NOT_BLANK if self.required else NO_NUL,
        }

    def strip(self, value: str) -> str:
        stripped = value.strip()
        if self.required and not stripped:
            raise PydanticCustomError("blank", "must hold a non-space character")
        return stripped


Name = Annotated[str, Stripped(200)]
Text = Annotated[str, StringConstraints(max_length=20_000)]
Url = Annotated[str, Stripped(4096)]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
Resolution = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")]
Json = dict[str, Any]
# A page cursor as the views issue it (unpadded urlsafe base64 of a JSON pair): its form
# is checked here, what it holds by the view (422 `invalid_cursor`); empty is no cursor.
Cursor = Annotated[str, StringConstraints(max_length=500, pattern=r"^[A-Za-z0-9_-]*$")]
WorkerId = Annotated[str, Stripped(200)]

MAX_BATCH = 100
# Output size per project aspect ratio, as the seed studio resolved it.
RESOLUTIONS = {
    "16:9": "902x508",
    "9:16": "508x902",
    "1:1": "670x670",
    "4:3": "768x576",
    "3:4": "576x768",
    "21:9": "1024x438",
    "3:2": "822x548",
    "2:3": "548x822",
}
# The ratios a project or shot may take (domain.project.ASPECT_RATIOS).
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "3:2", "2:3"]


def alias(*names: str) -> Any:
    return AliasChoices(*names)


# A field that may be left out but not sent as null (the schema says boolean).
BOOLEAN = WithJsonSchema({"type": "boolean"})


def one_of_sent(*fields: str, kinds: dict[str, str] | None = None) -> dict[str, Any]:
    """`json_schema_extra` for "send at least one of these" (not null, when `kinds` names
    the field's JSON type)."""
    return {
        "anyOf": [
            {
                "required": [name],
                **(
                    {"properties": {name: {"type": kinds[name]}}} if kinds and name in kinds else {}
                ),
            }
            for name in fields
        ]
    }


class Body(BaseModel):
    """A request body: unknown fields are ignored, so older and newer clients both work."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    min_position: int | None = Field(
        None, ge=0, le=2**62, description="answer once the view has reached this"
    )


# -- projects -----------------------------------------------------------------
class ProjectList(Query):
    deleted: bool = Field(
        False, description="true: the caller's deleted projects (to restore), newest deletion first"
    )


class ProjectCreate(Body):
    name: Name
    aspect_ratio: AspectRatio | None = None
    settings: Json | None = None


class ProjectUpdate(Body):
    name: Name | None = None
    aspect_ratio: AspectRatio | None = None
    settings: Json | None = None


# -- shots --------------------------------------------------------------------
class ShotList(Query):
    project_id: UUID = Field(validation_alias=alias("projectId", "project_id"))


class ShotCreate(Body):
    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))
    name: Name
    aspect_ratio: AspectRatio | None = None
    settings: Json | None = None
    generation_id: UUID | None = Field(
        None, validation_alias=alias("generation_id", "generationId")
    )


class ShotUpdate(Body):
    name: Name | None = None
    aspect_ratio: AspectRatio | None = None
    settings: Json | None = None


class ShotGenerationAdd(Body):
    shot_id: UUID = Field(validation_alias=alias("shot_id", "shotId"))
    generation_id: UUID = Field(validation_alias=alias("generation_id", "generationId"))
    with_position: bool = True
    timeline_frame: int | None = Field(None, ge=0, le=10_000_000)
    metadata: Json | None = None


class ShotOrder(Body):
    ordered_generation_ids: list[UUID] = Field(
        validation_alias=alias("orderedGenerationIds", "ordered_generation_ids"), max_length=10_000
    )


class ShotMemberMove(Body):
    """A timeline move: a frame ≥ 0, or `null` to take the image off the timeline."""

    timeline_frame: int | None = Field(
        ...,
        ge=0,
        le=10_000_000,
        validation_alias=alias("timeline_frame", "timelineFrame"),
        description="the new frame; null takes the member off the timeline",
    )


class ProjectShotOrder(Body):
    shot_ids: list[UUID] = Field(
        validation_alias=alias("shot_ids", "shotIds"),
        max_length=10_000,
        description="every live shot of the project, exactly once",
    )


# -- generations --------------------------------------------------------------
class GenerationList(Query):
    project_id: UUID = Field(validation_alias=alias("projectId", "project_id"))
    starred: bool | None = None
    type: Literal["image", "video"] | None = None
    shot_id: UUID | None = Field(None, validation_alias=alias("shotId", "shot_id"))
    not_in_shot: bool | None = Field(
        None,
        validation_alias=alias("notInShot", "not_in_shot"),
        description="true: only generations in no shot",
    )
    unpositioned_in_shot: UUID | None = Field(
        None, validation_alias=alias("unpositionedInShot", "unpositioned_in_shot")
    )
    deleted: bool = Field(
        False,
        description="true: the project's deleted generations (to "
        "restore), newest first; other filters apply",
    )
    tool_type: str | None = Field(
        None,
        validation_alias=alias("toolType", "tool_type"),
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="only generations made by this tool (params.tool_type, else the task "
        "type that made them)",
    )
    cursor: Cursor | None = None
    limit: int = Field(50, ge=1, le=200)


class ChildrenList(Query):
    cursor: Cursor | None = None
    limit: int = Field(50, ge=1, le=200)


class LineageQuery(Query):
    depth: int = Field(50, ge=1, le=50, description="at most this many ancestors")
    cursor: Cursor | None = Field(None, description="the derivatives' next page")
    limit: int = Field(50, ge=1, le=200, description="derivatives per page")


class GenerationCreate(Body):
    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))
    location: Url
    type: Literal["image", "video"] = "image"
    thumbnail_url: Url | None = None
    name: str | None = Field(None, max_length=500)
    params: Json | None = None
    based_on: UUID | None = None
    shot_id: UUID | None = None
    with_position: bool = True


class GenerationPatch(Body):
    model_config = ConfigDict(json_schema_extra=one_of_sent("starred", "name"))

    starred: Annotated[bool | None, BOOLEAN] = None
    name: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def something_to_change(self) -> GenerationPatch:
        if not self.model_fields_set & {"starred", "name"}:
            raise ValueError("send `starred` and/or `name`")
        if "starred" in self.model_fields_set and self.starred is None:
            raise ValueError("`starred` is true or false")
        return self


class VariantPatch(Body):
    """Any of the three; what is not sent keeps its value (`name: null` clears it)."""

    model_config = ConfigDict(json_schema_extra=one_of_sent("viewed", "starred", "name"))

    viewed: Annotated[bool | None, BOOLEAN] = Field(
        None, description='false shows the "NEW" badge again'
    )
    starred: Annotated[bool | None, BOOLEAN] = None
    name: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def something_to_change(self) -> VariantPatch:
        if not self.model_fields_set & {"viewed", "starred", "name"}:
            raise ValueError("send `viewed`, `starred` and/or `name`")
        for field in ("viewed", "starred"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"`{field}` is true or false")
        return self


class VariantCreate(Body):
    location: Url
    variant_type: Annotated[str, StringConstraints(min_length=1, max_length=50)] = "edit"
    thumbnail_url: Url | None = None
    params: Json | None = None
    name: str | None = Field(None, max_length=500)
    make_primary: bool = False


# -- tasks: the families of unified task creation -------------------------------
class TaskSpec(BaseModel):
    """One task to queue: catalogue type, params, dependencies."""

    task_type: str
    params: Json
    dependant_on: list[UUID] = []


class ProjectFacts(BaseModel):
    """What a family needs to know about the project it queues into."""

    aspect_ratio: str = "16:9"

    @property
    def resolution(self) -> str:
        return RESOLUTIONS.get(self.aspect_ratio, RESOLUTIONS["16:9"])


class FamilyInput(BaseModel):
    """Fields the model does not name are kept and passed on in the task params."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    family: ClassVar[str]
    batch: ClassVar[bool] = False

    def params(self, **overrides: Any) -> Json:
        data = self.model_dump(mode="json", exclude_none=True, by_alias=False)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return data

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        raise NotImplementedError


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


def pick_seed(seed: int | None, offset: int) -> int:
    if seed is None:
        return random.randint(0, 2**31 - 1)  # a generation seed, not a secret
    return (seed + offset) % 2**31


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
    batch: ClassVar[bool] = True

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
        count = len(self.prompts) * self.images_per_prompt
        if count > MAX_BATCH:
            raise ValueError(f"prompts * images_per_prompt is {count}; at most {MAX_BATCH}")
        return self

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        base = self.params(resolution=self.resolution or project.resolution)
        base.pop("prompts", None)
        base.pop("images_per_prompt", None)
        specs = []
        for p, prompt in enumerate(self.prompts):
            text = prompt if isinstance(prompt, str) else prompt.full_prompt
            for i in range(self.images_per_prompt):
                seed = pick_seed(self.seed, p * self.images_per_prompt + i)
                specs.append(
                    TaskSpec(
                        task_type="image_generation", params={**base, "prompt": text, "seed": seed}
                    )
                )
        return specs


class MagicEditInput(FamilyInput):
    family: ClassVar[str] = "magic_edit"
    batch: ClassVar[bool] = True

    prompt: Annotated[str, Stripped(20_000)]
    image_url: Url
    based_on: UUID | None = None
    num_images: int = Field(1, ge=1, le=16, validation_alias=alias("num_images", "numImages"))
    seed: Seed | None = None
    resolution: Resolution | None = None
    shot_id: UUID | None = None
    is_primary: bool = False

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        base = self.params(resolution=self.resolution or project.resolution)
        base.pop("num_images", None)
        return [
            TaskSpec(task_type="magic_edit", params={**base, "seed": pick_seed(self.seed, i)})
            for i in range(self.num_images)
        ]


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

    task_type: ClassVar[str]

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
            raise ValueError(
                "give `based_on` (the result becomes a variant of it) or set `create_as_generation`"
            )
        return self

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        return [
            TaskSpec(task_type=self.task_type, params=self.params(seed=pick_seed(self.seed, 0)))
        ]


class ImageInpaintInput(_EditInput):
    family: ClassVar[str] = "image_inpaint"
    task_type: ClassVar[str] = "image_inpaint"


class AnnotatedImageEditInput(_EditInput):
    family: ClassVar[str] = "annotated_image_edit"
    task_type: ClassVar[str] = "annotated_image_edit"


STRUCTURE_DEFAULTS = {
    "structure_video_treatment": "adjust",
    "structure_video_motion_strength": 1.0,
    "structure_video_type": "flow",
}


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
            for key, default in STRUCTURE_DEFAULTS.items():
                if getattr(self, key) is None:
                    setattr(self, key, default)
        return self


class ImageUpscaleInput(FamilyInput):
    family: ClassVar[str] = "image_upscale"

    image_url: Url
    based_on: UUID | None = None
    scale_factor: Literal[2, 4] = 2
    is_primary: bool = False

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        return [TaskSpec(task_type="image_upscale", params=self.params())]


class CharacterAnimateInput(FamilyInput):
    family: ClassVar[str] = "character_animate"

    character_image_url: Url
    motion_video_url: Url
    prompt: Text | None = None
    mode: Literal["animate", "replace"] = "animate"
    resolution: Resolution | None = None
    shot_id: UUID | None = None

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        return [
            TaskSpec(
                task_type="character_animate",
                params=self.params(resolution=self.resolution or project.resolution),
            )
        ]


LIST_LENGTHS = "list_lengths"  # the error type of a refused length relation (docs/API.md)


def expand(values: list[Any], count: int, what: str) -> list[Any]:
    """One value for all, or exactly one per item (the seed's expandArrayToCount)."""
    if len(values) == 1:
        return values * count
    if len(values) != count:  # a rule between two lists' lengths: no JSON Schema says it
        raise PydanticCustomError(
            LIST_LENGTHS,
            "{what} has {n} items; give 1 or {count}",
            {"what": what, "n": len(values), "count": count},
        )
    return values


class RunInput(FamilyInput):
    """An orchestrated run (travel, join): the domain spawns its segments and stitch."""

    inputs_field: ClassVar[str]
    ids_field: ClassVar[str]

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        raise TypeError(f"{self.family} starts a run: use run_params()")

    def run_params(self, project: ProjectFacts) -> Json:
        """Params of the run; the inputs and shot travel beside them, not inside."""
        params = self.params(
            resolution=getattr(self, "resolution", None) or project.resolution,
            seed=pick_seed(getattr(self, "seed", None), 0),
        )
        for key in (self.inputs_field, self.ids_field, "shot_id"):
            params.pop(key, None)
        return params


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
        clips = self.clip_generation_ids or self.clip_urls
        if not clips:
            raise ValueError("name the clips: `clip_urls` or `clip_generation_ids` (2 or more)")
        self.prompts = expand(self.prompts, len(clips) - 1, "prompts")
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
        images = self.image_generation_ids or self.image_urls
        if not images and self.shot_id is None:
            raise ValueError("name the images: `image_urls`, `image_generation_ids` or `shot_id`")
        if images:  # with a shot the count is known only to the domain
            segments = len(images) - 1
            self.base_prompts = expand(self.base_prompts, segments, "base_prompts")
            self.segment_frames = expand(self.segment_frames, segments, "segment_frames")
            self.frame_overlap = expand(self.frame_overlap, segments, "frame_overlap")
            if self.negative_prompts:
                self.negative_prompts = expand(self.negative_prompts, segments, "negative_prompts")
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

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        return [
            TaskSpec(
                task_type="individual_travel_segment",
                params=self.params(
                    resolution=self.resolution or project.resolution, seed=pick_seed(self.seed, 0)
                ),
            )
        ]


class EditTravelInput(ImageGenerationInput):
    """Seed 000's Edit Travel tool: one input image (`image_url`) edited by each prompt,
    `images_per_prompt` times (image generation's batch form); every result is a new
    generation. `model` picks the catalogue type: `edit_travel_kontext` or
    `edit_travel_flux`."""

    family: ClassVar[str] = "edit_travel"

    image_url: Url
    model: Literal["kontext", "flux"] = "kontext"

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        specs = super().to_tasks(project)
        for spec in specs:
            spec.params.pop("model", None)
            spec.task_type = f"edit_travel_{self.model}"
        return specs


FAMILIES: dict[str, type[FamilyInput]] = {
    m.family: m
    for m in (
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
FamilyName = Literal[
    "image_generation",
    "magic_edit",
    "image_inpaint",
    "annotated_image_edit",
    "image_upscale",
    "character_animate",
    "join_clips",
    "travel_between_images",
    "individual_travel_segment",
    "edit_travel",
]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Seed 000 created orchestrators by type; here they start a run (segments, stitch).
RUN_TYPES: dict[str, type[RunInput]] = {
    "travel_orchestrator": TravelBetweenImagesInput,
    "join_clips_orchestrator": JoinClipsInput,
}
COMPONENT = "#/components/schemas/{}"


def task_create_forms() -> list[dict[str, Any]]:
    """`TaskCreate`'s forms for the OpenAPI document, whose components hold every family
    input (pydantic cannot write a `$ref` to another model into a schema): a family with
    that family's input; a run's task type with that run's params; any other task type
    with free params."""
    families = [
        {
            "required": ["family", "input"],
            "properties": {
                "family": {"const": name},
                "input": {"$ref": COMPONENT.format(model.__name__)},
                "task_type": {"type": "null"},
            },
        }
        for name, model in FAMILIES.items()
    ]
    runs = [
        {
            "required": ["task_type", "params"],
            "properties": {
                "task_type": {"const": name},
                "params": {"$ref": COMPONENT.format(model.__name__)},
                "family": {"type": "null"},
            },
        }
        for name, model in RUN_TYPES.items()
    ]
    other = {
        "required": ["task_type"],
        "properties": {
            "task_type": {"type": "string", "not": {"enum": list(RUN_TYPES)}},
            "family": {"type": "null"},
        },
    }
    return [*families, *runs, other]


class FamilyTaskCreate(Body):
    """Seed 001: a task family and its input; validated by that family's model."""

    family: FamilyName
    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))
    input: Json
    idempotency_key: IdempotencyKey | None = None


class TypedTaskCreate(Body):
    """Seed 000: any active catalogue type with its raw params."""

    task_type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))
    params: Json = Field(default_factory=dict)
    dependant_on: list[UUID] = Field(default_factory=list, max_length=100)
    idempotency_key: IdempotencyKey | None = None


class TaskCreate(Body):
    """Either form: `family` + `input`, or `task_type` + `params`."""

    family: FamilyName | None = None
    task_type: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))
    input: Json | None = None
    params: Json | None = None
    dependant_on: list[UUID] = Field(default_factory=list, max_length=100)
    idempotency_key: IdempotencyKey | None = None

    @model_validator(mode="after")
    def one_form(self) -> TaskCreate:
        if (self.family is None) == (self.task_type is None):
            raise ValueError("send either `family` with `input`, or `task_type` with `params`")
        if self.family is not None and self.input is None:
            raise ValueError(f"family {self.family!r} needs its `input` object")
        return self


class TravelRequest(TravelBetweenImagesInput):
    """`POST /api/steerable-motion/travel-between-images` (seed 000): the family input
    plus the project."""

    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))
    idempotency_key: IdempotencyKey | None = None


class TaskList(Query):
    project_id: UUID = Field(validation_alias=alias("projectId", "project_id"))
    status: Literal["Queued", "In Progress", "Complete", "Failed", "Cancelled"] | None = None


class TaskStatusChange(Body):
    status: Literal["Queued", "In Progress", "Complete", "Failed", "Cancelled"]
    error_message: Text | None = None
    worker_id: WorkerId | None = None
    output_location: Url | None = None


class CancelPending(Body):
    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))


# -- workers ------------------------------------------------------------------


class ClaimRequest(Body):
    worker_id: WorkerId
    run_type: Literal["gpu", "api"] = "gpu"
    current_model: str | None = Field(None, max_length=200)


class Heartbeat(Body):
    """`status`, `current_model` and VRAM are kept with the last heartbeat (not in the
    event log) for `GET /api/workers`; one left out keeps its last value."""

    worker_id: WorkerId
    status: str | None = Field(None, max_length=100)
    current_model: str | None = Field(None, max_length=200)
    vram_used_mb: int | None = Field(None, ge=0, le=10_000_000)
    vram_total_mb: int | None = Field(None, ge=0, le=10_000_000)
    task_ids: list[UUID] = Field(default_factory=list, max_length=100)


class TaskComplete(Body):
    worker_id: WorkerId | None = Field(None, description="when given, must hold the task")
    output_location: Url
    thumbnail_url: Url | None = None
    result_data: Json | None = None


class TaskFail(Body):
    worker_id: WorkerId | None = Field(None, description="when given, must hold the task")
    error_message: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


class TaskRelease(Body):
    worker_id: WorkerId | None = Field(None, description="when given, must hold the task")
    reason: Annotated[str, Stripped(2_000, required=False)] | None = Field(
        None, description="why it is handed back (default: handed back)"
    )


# -- credits and tokens ---------------------------------------------------------
class CreditGrant(Body):
    user_id: Annotated[str, Stripped(200)]
    amount: float = Field(gt=0, le=1_000_000)
    reason: Annotated[str, Stripped(500)]

    @field_validator("amount")
    @classmethod
    def finite(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("amount must be a finite number")
        return value


class CreditTopUp(Body):
    user_id: Annotated[str, Stripped(200)]
    amount: float = Field(gt=0, le=1_000_000)
    reference: Annotated[str, Stripped(200)] = Field(
        description="the payment's external id: a reference seen before adds nothing"
    )

    @field_validator("amount")
    @classmethod
    def finite(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("amount must be a finite number")
        return value


# -- the task-type catalogue ------------------------------------------------------
TaskTypeName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
]


class TaskTypeSpec(Body):
    """A catalogue row to register (a row of that name is replaced: the last one wins)."""

    name: TaskTypeName
    run_type: Literal["gpu", "api"]
    category: Literal["generation", "processing", "orchestration", "utility"]
    billing_type: Literal["per_second", "per_unit"]
    base_cost_per_second: float = Field(0, ge=0, le=1_000_000)
    unit_cost: float = Field(0, ge=0, le=1_000_000)
    cost_factors: dict[str, Any] = Field(
        default_factory=dict,
        description=("`resolution` / `modelType` multipliers by param value, `frameCount` adder"),
    )
    variant_type: Annotated[str, StringConstraints(max_length=100)] | None = None
    is_active: bool = True
    supports_progress: bool = False
    display_name: Annotated[str, StringConstraints(max_length=200)] = ""
    model_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=2_000)] = ""

    @field_validator("base_cost_per_second", "unit_cost")
    @classmethod
    def finite_cost(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a cost must be a finite number")
        return value


class TokenCreate(Body):
    label: Annotated[str, Stripped(100)]


# -- responses (documentation: the OpenAPI document names these) -----------------
class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(Out):
    error: str
    code: str
    message: str


class Written(Out):
    """Ids of what a command wrote; `position` is also in `X-Darkroom-Position`."""

    position: int


class Health(Out):
    status: str
    head_position: int


class Project(Out):
    id: UUID
    name: str
    aspect_ratio: str
    settings: Json = {}


class ProjectListOut(Out):
    items: list[Project]


class ShotImage(Out):
    shot_generation_id: UUID
    generation_id: UUID
    timeline_frame: int | None
    position: int | None
    location: str | None
    thumbnail_url: str | None
    type: str | None


class Shot(Out):
    id: UUID
    project_id: UUID
    name: str
    position: int
    images: list[ShotImage] = []
    unpositioned_count: int = 0


class Generation(Out):
    id: UUID
    project_id: UUID
    location: str | None
    thumbnail_url: str | None
    type: str
    starred: bool


class GenerationPage(Out):
    items: list[Generation]
    next_cursor: str | None


class Lineage(Out):
    generation_id: UUID
    ancestors: list[Generation] = Field(
        description="what this was made from, nearest first, up the based_on chain"
    )
    ancestors_truncated: bool = Field(description="the chain goes on past `depth`")
    derivatives: list[Generation] = Field(
        description="what was made from it (one level), newest first"
    )
    next_cursor: str | None = Field(description="the derivatives' next page")


class Variant(Out):
    id: UUID
    location: str
    variant_type: str
    is_primary: bool


class VariantEdited(Written):
    generation_id: UUID
    variant_id: UUID
    viewed: bool
    starred: bool
    name: str | None


class VariantList(Out):
    items: list[Variant]


class Task(Out):
    id: UUID
    project_id: UUID
    task_type: str
    status: str


class TaskOutputs(Out):
    output_location: str | None = None
    thumbnail_url: str | None = None
    result_data: Json | None = None


class TaskTimings(Out):
    created_at: str | None = None
    started_at: str | None = None
    processed_at: str | None = None
    updated_at: str | None = None
    duration_s: float | None = None


class TaskDetails(Task):
    """Everything the seed's task details modal shows (`params_summary` kept for older
    clients)."""

    params: Json
    outputs: TaskOutputs
    error_message: str | None = None
    attempts: int
    worker_id: str | None = None
    timings: TaskTimings
    cost: str | None = None


class ShotMemberMoved(Written):
    shot_id: UUID
    shot_generation_id: UUID
    generation_id: UUID
    timeline_frame: int | None = None


class ShotsOrdered(Written):
    project_id: UUID
    shot_ids: list[UUID]


class TaskListOut(Out):
    items: list[Task]


class TaskCreated(Written):
    task_id: UUID | None = None
    task_ids: list[UUID] | None = None
    status: str | None = None


class Claimed(Out):
    task_id: UUID
    task_type: str
    params: Json
    project_id: UUID


class Cancelled(Written):
    cancelled: int


class Upload(Out):
    location: str = Field(
        description="the file's signed URL (`?exp=&sig=`); send it back "
        "as a location, the studio keeps the bare path"
    )
    thumbnail_url: str = Field(description="a WebP thumbnail's signed URL (<= 256 px)")
    content_type: str = Field(description="what the bytes are (decoded, not as declared)")
    type: Literal["image", "video"]
    width: int
    height: int


class LedgerEntry(Out):
    kind: str
    amount: float
    reason: str


class Credits(Out):
    balance: float
    ledger: list[LedgerEntry]


class TaskTypeOut(Out):
    name: str
    display_name: str
    run_type: str
    category: str
    billing_type: str
    base_cost_per_second: float
    unit_cost: float
    cost_factors: dict[str, Any]
    variant_type: str | None
    is_active: bool
    supports_progress: bool
    model_name: str | None
    description: str


class TopUp(Written):
    user_id: str
    reference: str
    added: bool = Field(description="false: this reference was seen before; nothing added")
    balance: float


class Token(Out):
    id: UUID
    label: str
    created_at: str


class TokenList(Out):
    items: list[Token]


class TokenCreated(Written):
    token_id: UUID
    label: str
    token: str


class WorkerList(Query):
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="silence after which a worker is `silent` (default: the sweeper's)",
    )


class HeldTask(Out):
    task_id: UUID
    since: str


class WorkerOut(Out):
    worker_id: str
    owner: str | None = Field(description="service, user:<id>, system; null: unclaimed")
    liveness: Literal["alive", "silent", "lost"]
    last_seen: str
    silent_s: float
    held_tasks: list[HeldTask]
    status: str | None
    current_model: str | None
    vram_used_mb: int | None
    vram_total_mb: int | None


class HeartbeatOut(Written):
    worker_id: str
    stop: list[UUID] = Field(description="reported tasks this worker no longer holds: drop them")


# ---- resources (LoRAs) ------------------------------------------------------------
class ResourceUrlCreate(Body):
    name: Name
    url: Annotated[str, StringConstraints(max_length=4096, pattern=r"^https?://[^\s\x00]+$")] = (
        Field(
            description="where a worker fetches the LoRA when a task names it (nothing is "
            "fetched at registration)"
        )
    )
    type: Literal["lora"] = "lora"


class ResourceList(Query):
    cursor: Cursor | None = None
    limit: int = Field(50, ge=1, le=200)


class ResourceOut(Out):
    id: UUID
    type: str
    name: str
    location: str | None = Field(description="the stored file (uploads); null for a URL")
    url: str | None = Field(description="the LoRA's URL (URL resources); null for uploads")
    size: int | None
    sha256: str | None
    metadata: dict[str, Any] = Field(
        description="what the file's header says: format, tensors, rank, targets, dtypes"
    )
    created_at: str


class ResourcePage(Out):
    items: list[ResourceOut]
    next_cursor: str | None

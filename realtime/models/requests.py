"""Request bodies and query strings of projects, shots, generations and variants."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from realtime.models.common import (
    BOOLEAN,
    AspectRatio,
    Body,
    Cursor,
    Json,
    Name,
    Query,
    Url,
    alias,
    one_of_sent,
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

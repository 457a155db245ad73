from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    OriginalVariantDeletionError,
    ValidationError,
    VariantNotFoundError,
)
from domain.softdelete import SoftDeletable

MEDIA_TYPES = ("image", "video")
KEEP: Any = object()  # edit_variant: leave the name as it is
ORIGINAL = "original"


@dataclass(frozen=True)
class Variant:
    id: UUID
    location: str
    thumbnail_url: str | None
    params: dict[str, Any]
    variant_type: str
    name: str | None
    created_at: datetime
    starred: bool
    viewed: bool
    source_task_id: UUID | None


def check_media_type(media_type: str) -> str:
    if media_type not in MEDIA_TYPES:
        raise ValidationError(f"generation type must be image or video (got {media_type!r})")
    return media_type


def check_location(location: str) -> str:
    if not isinstance(location, str) or not location.strip():
        raise ValidationError(f"a variant needs a non-empty location (got {location!r})")
    return location.strip()


def check_name(name: object) -> str | None:
    """A generation's or variant's name: at most 500 characters, blank is none."""
    if name is not None and not isinstance(name, str):
        raise ValidationError(f"a name must be text or null (got {name!r})")
    if name is not None and len(name) > 500:
        raise ValidationError(f"a name is at most 500 characters (got {len(name)})")
    return (name or "").strip() or None


class Generation(SoftDeletable, Aggregate):
    """An image or video with its variants; it shows its primary variant's media."""

    TOPIC = "darkroom.generation"
    KIND = "generation"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.generation.created"
        project_id: UUID
        media_type: str
        name: str | None
        params: dict[str, Any]
        based_on: UUID | None
        parent_generation_id: UUID | None
        child_order: int | None
        task_id: UUID | None
        created_at: datetime

    class VariantAdded(Aggregate.Event):
        TOPIC = "darkroom.generation.variant_added"
        variant_id: UUID
        location: str
        thumbnail_url: str | None
        params: dict[str, Any]
        variant_type: str
        name: str | None
        created_at: datetime
        viewed: bool
        source_task_id: UUID | None
        make_primary: bool

    class PrimaryChanged(Aggregate.Event):
        TOPIC = "darkroom.generation.primary_changed"
        variant_id: UUID | None

    class VariantDeleted(Aggregate.Event):
        TOPIC = "darkroom.generation.variant_deleted"
        variant_id: UUID
        promoted_id: UUID | None

    class VariantViewed(Aggregate.Event):
        TOPIC = "darkroom.generation.variant_viewed"
        variant_id: UUID

    class VariantEdited(Aggregate.Event):
        TOPIC = "darkroom.generation.variant_edited"
        variant_id: UUID
        viewed: bool
        starred: bool
        name: str | None

    class Starred(Aggregate.Event):
        TOPIC = "darkroom.generation.starred"
        starred: bool

    class Renamed(Aggregate.Event):
        TOPIC = "darkroom.generation.renamed"
        name: str | None

    class ChildAdded(Aggregate.Event):
        TOPIC = "darkroom.generation.child_added"
        child_id: UUID
        child_order: int

    class TaskLinked(Aggregate.Event):
        TOPIC = "darkroom.generation.task_linked"
        task_id: UUID

    class Deleted(Aggregate.Event):
        TOPIC = "darkroom.generation.deleted"

    class Restored(Aggregate.Event):
        TOPIC = "darkroom.generation.restored"

    @event(Created)
    def __init__(
        self,
        project_id: UUID,
        media_type: str,
        name: str | None,
        params: dict[str, Any],
        based_on: UUID | None,
        parent_generation_id: UUID | None,
        child_order: int | None,
        task_id: UUID | None,
        created_at: datetime,
    ) -> None:
        self.project_id = project_id
        self.media_type = media_type
        self.name = name
        self.params = params
        self.based_on = based_on
        self.parent_generation_id = parent_generation_id
        self.child_order = child_order
        self.task_ids: list[UUID] = [task_id] if task_id else []
        self.created_at = created_at
        self.variants: dict[UUID, Variant] = {}
        self.primary_variant_id: UUID | None = None
        self.children: dict[int, UUID] = {}
        self.starred = False
        self.deleted = False

    @classmethod
    def start(
        cls,
        project_id: UUID,
        media_type: str,
        at: datetime,
        *,
        name: str | None = None,
        params: dict[str, Any] | None = None,
        based_on: UUID | None = None,
        parent_generation_id: UUID | None = None,
        child_order: int | None = None,
        task_id: UUID | None = None,
    ) -> Generation:
        if child_order is not None and child_order < 0:
            raise ValidationError(f"child_order must be ≥ 0 (got {child_order})")
        return cls(
            project_id=project_id,
            media_type=check_media_type(media_type),
            name=(name or "").strip() or None,
            params=dict(params or {}),
            based_on=based_on,
            parent_generation_id=parent_generation_id,
            child_order=child_order,
            task_id=task_id,
            created_at=at,
        )

    # -- decisions -------------------------------------------------------
    def add_variant(
        self,
        variant_id: UUID,
        location: str,
        at: datetime,
        *,
        variant_type: str = ORIGINAL,
        thumbnail_url: str | None = None,
        params: dict[str, Any] | None = None,
        name: str | None = None,
        make_primary: bool = False,
        viewed: bool = False,
        source_task_id: UUID | None = None,
    ) -> Variant:
        """A new variant; the first one is primary whatever was asked."""
        self.ensure_live()
        if not variant_type:
            raise ValidationError("a variant needs a type")
        self._variant_added(
            variant_id=variant_id,
            location=check_location(location),
            thumbnail_url=thumbnail_url,
            params=dict(params or {}),
            variant_type=variant_type,
            name=name,
            created_at=at,
            viewed=viewed,
            source_task_id=source_task_id,
            make_primary=make_primary or self.primary_variant_id is None,
        )
        return self.variants[variant_id]

    def make_primary(self, variant_id: UUID) -> None:
        self.ensure_live()
        self.variant(variant_id)
        if self.primary_variant_id != variant_id:
            self._primary_changed(variant_id=variant_id)

    def delete_variant(self, variant_id: UUID) -> UUID | None:
        """Delete a variant; a deleted primary hands over to the newest remaining one."""
        self.ensure_live()
        variant = self.variant(variant_id)
        if variant.variant_type == ORIGINAL:
            raise OriginalVariantDeletionError(variant_id)
        promoted = self.primary_variant_id
        if promoted == variant_id:
            rest = [v for v in self.variants.values() if v.id != variant_id]
            promoted = max(rest, key=lambda v: v.created_at).id if rest else None
        self._variant_deleted(variant_id=variant_id, promoted_id=promoted)
        return promoted

    def mark_viewed(self, variant_id: UUID) -> None:
        if not self.variant(variant_id).viewed:
            self._variant_viewed(variant_id=variant_id)

    def edit_variant(
        self,
        variant_id: UUID,
        *,
        viewed: bool | None = None,
        starred: bool | None = None,
        name: object = KEEP,
    ) -> Variant:
        """Mark a variant viewed or not ("NEW"), star it, rename it; what is not given
        keeps its value, and a change to nothing writes nothing."""
        self.ensure_live()
        variant = self.variant(variant_id)
        for field, value in (("viewed", viewed), ("starred", starred)):
            if value is not None and not isinstance(value, bool):
                raise ValidationError(f"{field} must be true or false (got {value!r})")
        new_name = variant.name if name is KEEP else check_name(name)
        new_viewed = variant.viewed if viewed is None else viewed
        new_starred = variant.starred if starred is None else starred
        if (new_viewed, new_starred, new_name) != (variant.viewed, variant.starred, variant.name):
            self._variant_edited(
                variant_id=variant_id, viewed=new_viewed, starred=new_starred, name=new_name
            )
        return self.variants[variant_id]

    def star(self, starred: bool) -> None:
        self.ensure_live()
        if not isinstance(starred, bool):
            raise ValidationError(f"starred must be true or false (got {starred!r})")
        if starred != self.starred:
            self._starred(starred=starred)

    def rename(self, name: str | None) -> None:
        self.ensure_live()
        cleaned = check_name(name)
        if cleaned != self.name:
            self._renamed(name=cleaned)

    def add_child(self, child_id: UUID, child_order: int) -> None:
        self._child_added(child_id=child_id, child_order=child_order)

    def link_task(self, task_id: UUID) -> None:
        if task_id not in self.task_ids:
            self._task_linked(task_id=task_id)

    # -- questions -------------------------------------------------------
    def variant(self, variant_id: UUID) -> Variant:
        try:
            return self.variants[variant_id]
        except KeyError:
            raise VariantNotFoundError(variant_id) from None

    @property
    def primary(self) -> Variant | None:
        return self.variants.get(self.primary_variant_id) if self.primary_variant_id else None

    @property
    def location(self) -> str | None:
        return self.primary.location if self.primary else None

    @property
    def thumbnail_url(self) -> str | None:
        return self.primary.thumbnail_url if self.primary else None

    @property
    def display_params(self) -> dict[str, Any]:
        return self.primary.params if self.primary else self.params

    @property
    def display_name(self) -> str | None:
        return (self.primary.name if self.primary and self.primary.name else None) or self.name

    @property
    def is_child(self) -> bool:
        return self.parent_generation_id is not None

    # -- state changes ---------------------------------------------------
    @event(VariantAdded)
    def _variant_added(
        self,
        variant_id: UUID,
        location: str,
        thumbnail_url: str | None,
        params: dict[str, Any],
        variant_type: str,
        name: str | None,
        created_at: datetime,
        viewed: bool,
        source_task_id: UUID | None,
        make_primary: bool,
    ) -> None:
        self.variants[variant_id] = Variant(
            variant_id,
            location,
            thumbnail_url,
            params,
            variant_type,
            name,
            created_at,
            False,
            viewed,
            source_task_id,
        )
        if make_primary:
            self.primary_variant_id = variant_id

    @event(PrimaryChanged)
    def _primary_changed(self, variant_id: UUID | None) -> None:
        self.primary_variant_id = variant_id

    @event(VariantDeleted)
    def _variant_deleted(self, variant_id: UUID, promoted_id: UUID | None) -> None:
        del self.variants[variant_id]
        self.primary_variant_id = promoted_id

    @event(VariantViewed)
    def _variant_viewed(self, variant_id: UUID) -> None:
        self.variants[variant_id] = replace(self.variants[variant_id], viewed=True)

    @event(VariantEdited)
    def _variant_edited(
        self, variant_id: UUID, viewed: bool, starred: bool, name: str | None
    ) -> None:
        self.variants[variant_id] = replace(
            self.variants[variant_id], viewed=viewed, starred=starred, name=name
        )

    @event(Starred)
    def _starred(self, starred: bool) -> None:
        self.starred = starred

    @event(Renamed)
    def _renamed(self, name: str | None) -> None:
        self.name = name

    @event(ChildAdded)
    def _child_added(self, child_id: UUID, child_order: int) -> None:
        self.children[child_order] = child_id

    @event(TaskLinked)
    def _task_linked(self, task_id: UUID) -> None:
        self.task_ids.append(task_id)

    @event(Deleted)
    def _deleted(self) -> None:
        self.deleted = True

    @event(Restored)
    def _restored(self) -> None:
        self.deleted = False

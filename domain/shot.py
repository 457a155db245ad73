from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    MembershipNotFoundError,
    NegativeFrameError,
    ShotOrderError,
)
from domain.project import check_aspect_ratio, clean_name
from domain.softdelete import SoftDeletable

FRAME_GAP = 50
TIMELINE_FRAMES = 81


@dataclass(frozen=True)
class Membership:
    """One appearance of a generation in a shot (a generation may appear twice)."""

    id: UUID
    generation_id: UUID
    timeline_frame: int | None
    media_type: str
    added: int
    metadata: dict[str, Any]

    @property
    def is_video(self) -> bool:
        return self.media_type == "video"


def spacing_gap(n: int) -> int:
    """Frame gap for n positioned images: 50, or tighter so that n images fit 81 frames."""
    if (n - 1) * FRAME_GAP > TIMELINE_FRAMES - n:
        return max(1, (TIMELINE_FRAMES - n) // max(1, n - 1))
    return FRAME_GAP


def check_frame(frame: int | None) -> int | None:
    if frame is not None and (not isinstance(frame, int) or frame < 0):
        raise NegativeFrameError(f"a timeline frame is a whole number ≥ 0 (got {frame!r})")
    return frame


class Shot(SoftDeletable, Aggregate):
    TOPIC = "darkroom.shot"
    KIND = "shot"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.shot.created"
        project_id: UUID
        name: str
        position: int
        aspect_ratio: str | None
        settings: dict[str, Any]

    class Updated(Aggregate.Event):
        TOPIC = "darkroom.shot.updated"
        name: str
        aspect_ratio: str | None
        settings: dict[str, Any]

    class MemberAdded(Aggregate.Event):
        TOPIC = "darkroom.shot.member_added"
        membership_id: UUID
        generation_id: UUID
        timeline_frame: int | None
        media_type: str
        metadata: dict[str, Any]

    class MemberRemoved(Aggregate.Event):
        TOPIC = "darkroom.shot.member_removed"
        membership_id: UUID

    class FramesSet(Aggregate.Event):
        """New frames for some members (reorder, respacing, a move, unpositioning)."""

        TOPIC = "darkroom.shot.frames_set"
        frames: dict[str, int | None]

    class Placed(Aggregate.Event):
        """A new position among the project's shots (the project's shots were reordered)."""

        TOPIC = "darkroom.shot.placed"
        position: int

    class Deleted(Aggregate.Event):
        TOPIC = "darkroom.shot.deleted"

    class Restored(Aggregate.Event):
        TOPIC = "darkroom.shot.restored"

    @event(Created)
    def __init__(
        self,
        project_id: UUID,
        name: str,
        position: int,
        aspect_ratio: str | None,
        settings: dict[str, Any],
    ) -> None:
        self.project_id = project_id
        self.name = name
        self.position = position
        self.aspect_ratio = aspect_ratio
        self.settings = settings
        self.members: list[Membership] = []
        self.deleted = False
        self._added = 0

    @classmethod
    def start(
        cls,
        project_id: UUID,
        name: str,
        position: int,
        aspect_ratio: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Shot:
        if aspect_ratio is not None:
            check_aspect_ratio(aspect_ratio)
        return cls(
            project_id=project_id,
            name=clean_name(name, "shot"),
            position=position,
            aspect_ratio=aspect_ratio,
            settings=dict(settings or {}),
        )

    # -- decisions -------------------------------------------------------
    def update(
        self,
        name: str | None = None,
        aspect_ratio: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.ensure_live()
        if aspect_ratio is not None:
            check_aspect_ratio(aspect_ratio)
        self._updated(
            name=self.name if name is None else clean_name(name, "shot"),
            aspect_ratio=self.aspect_ratio if aspect_ratio is None else aspect_ratio,
            settings=self.settings if settings is None else dict(settings),
        )

    def add(
        self,
        membership_id: UUID,
        generation_id: UUID,
        media_type: str,
        with_position: bool = True,
        frame: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Membership:
        """Add a generation; positioned at `frame`, or after the last positioned member."""
        self.ensure_live()
        if frame is None and with_position:
            frame = self.next_frame()
        self._member_added(
            membership_id=membership_id,
            generation_id=generation_id,
            timeline_frame=check_frame(frame) if with_position else None,
            media_type=media_type,
            metadata=dict(metadata or {}),
        )
        return self.members[-1]

    def next_frame(self) -> int:
        frames = [m.timeline_frame for m in self.members if m.timeline_frame is not None]
        return max(frames) + FRAME_GAP if frames else 0

    def remove(self, membership_id: UUID) -> None:
        self.ensure_live()
        self._member_removed(membership_id=self.membership(membership_id).id)

    def remove_generation(self, generation_id: UUID) -> UUID:
        """Remove one appearance of a generation: the earliest on the timeline."""
        members = self.members_of(generation_id)
        if not members:
            raise MembershipNotFoundError(generation_id)
        self.remove(members[0].id)
        return members[0].id

    def move(self, membership_id: UUID, frame: int) -> None:
        self.ensure_live()
        member = self.membership(membership_id)
        self._frames_set(frames={str(member.id): check_frame(frame)})

    def unposition(self, membership_id: UUID) -> None:
        self.ensure_live()
        self._frames_set(frames={str(self.membership(membership_id).id): None})

    def place(self, position: int) -> bool:
        """Take this position among the project's shots; False when it already has it."""
        self.ensure_live()
        if position == self.position:
            return False
        self._placed(position=position)
        return True

    def member_for(self, ident: UUID) -> Membership:
        """A membership by its id, else the earliest appearance of a generation."""
        for m in self.members:
            if m.id == ident:
                return m
        members = self.members_of(ident)
        if not members:
            raise MembershipNotFoundError(ident)
        return members[0]

    def reorder(self, ordered_generation_ids: list[UUID]) -> None:
        """Frames 0, 50, 100… in the given order; a repeated id takes the next appearance."""
        self.ensure_live()
        queues = {g: self.members_of(g) for g in set(ordered_generation_ids)}
        frames: dict[str, int | None] = {}
        for rank, generation_id in enumerate(ordered_generation_ids):
            if not queues.get(generation_id):  # the order is wrong, not the shot missing
                raise ShotOrderError(
                    f"generation {generation_id} is not in shot {self.id} "
                    "as often as the order lists it"
                )
            frames[str(queues[generation_id].pop(0).id)] = rank * FRAME_GAP
        self._frames_set(frames=frames)

    def fix_spacing(self) -> None:
        self.ensure_live()
        images = self.positioned_images()
        gap = spacing_gap(len(images))
        self._frames_set(frames={str(m.id): i * gap for i, m in enumerate(images)})

    # -- questions -------------------------------------------------------
    def membership(self, membership_id: UUID) -> Membership:
        for m in self.members:
            if m.id == membership_id:
                return m
        raise MembershipNotFoundError(membership_id)

    def members_of(self, generation_id: UUID) -> list[Membership]:
        return sorted(
            (m for m in self.members if m.generation_id == generation_id), key=_timeline_key
        )

    def ordered_members(self) -> list[Membership]:
        return sorted(self.members, key=_timeline_key)

    def positioned_images(self) -> list[Membership]:
        return sorted(
            (m for m in self.members if m.timeline_frame is not None and not m.is_video),
            key=_timeline_key,
        )

    def copyable_members(self) -> list[Membership]:
        """What a duplicate keeps: positioned (frame ≥ 0) members that are not videos."""
        return [
            m
            for m in self.ordered_members()
            if m.timeline_frame is not None and m.timeline_frame >= 0 and not m.is_video
        ]

    @property
    def unpositioned_count(self) -> int:
        return sum(1 for m in self.members if m.timeline_frame is None and not m.is_video)

    # -- state changes ---------------------------------------------------
    @event(Updated)
    def _updated(self, name: str, aspect_ratio: str | None, settings: dict[str, Any]) -> None:
        self.name = name
        self.aspect_ratio = aspect_ratio
        self.settings = settings

    @event(MemberAdded)
    def _member_added(
        self,
        membership_id: UUID,
        generation_id: UUID,
        timeline_frame: int | None,
        media_type: str,
        metadata: dict[str, Any],
    ) -> None:
        self._added += 1
        self.members.append(
            Membership(
                membership_id, generation_id, timeline_frame, media_type, self._added, metadata
            )
        )

    @event(MemberRemoved)
    def _member_removed(self, membership_id: UUID) -> None:
        self.members = [m for m in self.members if m.id != membership_id]

    @event(FramesSet)
    def _frames_set(self, frames: dict[str, int | None]) -> None:
        self.members = [
            replace(m, timeline_frame=frames[str(m.id)]) if str(m.id) in frames else m
            for m in self.members
        ]

    @event(Placed)
    def _placed(self, position: int) -> None:
        self.position = position

    @event(Deleted)
    def _deleted(self) -> None:
        self.deleted = True

    @event(Restored)
    def _restored(self) -> None:
        self.deleted = False


def _timeline_key(m: Membership) -> tuple[int, int, int]:
    return (m.timeline_frame is None, m.timeline_frame or 0, m.added)

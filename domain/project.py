from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import EmptyNameError, ShotOrderError, ValidationError
from domain.softdelete import SoftDeletable

DEFAULT_PROJECT_NAME = "Default Project"
ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "3:2", "2:3")


def clean_name(name: str, what: str) -> str:
    cleaned = (name or "").strip()
    if not cleaned:
        raise EmptyNameError(f"a {what} needs a non-empty name (got {name!r})")
    if len(cleaned) > 200:
        raise ValidationError(f"a {what} name is at most 200 characters (got {len(cleaned)})")
    return cleaned


def check_aspect_ratio(aspect_ratio: str) -> str:
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValidationError(
            f"aspect ratio {aspect_ratio!r} is not one of {', '.join(ASPECT_RATIOS)}"
        )
    return aspect_ratio


class Project(SoftDeletable, Aggregate):
    TOPIC = "darkroom.project"
    KIND = "project"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.project.created"
        class_version = 2
        owner_id: str
        name: str
        aspect_ratio: str
        settings: dict[str, Any]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 had no settings and called the ratio `aspect`."""
            state["aspect_ratio"] = state.pop("aspect", None) or "16:9"
            state.setdefault("settings", {})

    class Updated(Aggregate.Event):
        TOPIC = "darkroom.project.updated"
        name: str
        aspect_ratio: str
        settings: dict[str, Any]

    class ShotPlaced(Aggregate.Event):
        TOPIC = "darkroom.project.shot_placed"
        class_version = 2
        position: int
        shot_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 did not name the shot."""
            state.setdefault("shot_id", None)

    class ShotsOrdered(Aggregate.Event):
        """The project's live shots were given positions 0..n-1 in this order."""

        TOPIC = "darkroom.project.shots_ordered"
        shot_ids: list[UUID]

    class Deleted(Aggregate.Event):
        TOPIC = "darkroom.project.deleted"

    class Restored(Aggregate.Event):
        TOPIC = "darkroom.project.restored"

    @event(Created)
    def __init__(
        self, owner_id: str, name: str, aspect_ratio: str, settings: dict[str, Any]
    ) -> None:
        self.owner_id = owner_id
        self.name = name
        self.aspect_ratio = aspect_ratio
        self.settings = settings
        self.deleted = False
        self.shots_placed = 0
        self.shot_ids: list[UUID] = []

    @classmethod
    def start(
        cls,
        owner_id: str,
        name: str,
        aspect_ratio: str = "16:9",
        settings: dict[str, Any] | None = None,
    ) -> Project:
        return cls(
            owner_id=owner_id,
            name=clean_name(name, "project"),
            aspect_ratio=check_aspect_ratio(aspect_ratio),
            settings=dict(settings or {}),
        )

    def update(
        self,
        name: str | None = None,
        aspect_ratio: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.ensure_live()
        self._updated(
            name=self.name if name is None else clean_name(name, "project"),
            aspect_ratio=self.aspect_ratio
            if aspect_ratio is None
            else check_aspect_ratio(aspect_ratio),
            settings=self.settings if settings is None else dict(settings),
        )

    @event(Updated)
    def _updated(self, name: str, aspect_ratio: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.aspect_ratio = aspect_ratio
        self.settings = settings

    def take_shot_position(self, shot_id: UUID | None = None) -> int:
        """The position of a new shot: after every shot placed so far."""
        self.ensure_live()
        position = self.shots_placed
        self._shot_placed(position=position, shot_id=shot_id)
        return position

    def order_shots(self, ordered: list[UUID], live: set[UUID]) -> None:
        """Positions 0..n-1 in this order: every live shot of the project exactly once."""
        self.ensure_live()
        seen: set[UUID] = set()
        for shot_id in ordered:
            if shot_id in seen:
                raise ShotOrderError(f"shot {shot_id} is listed more than once")
            seen.add(shot_id)
        unknown = [s for s in ordered if s not in live]
        if unknown:
            raise ShotOrderError(f"shot {unknown[0]} is not a live shot of project {self.id}")
        missing = sorted(str(s) for s in live - seen)
        if missing:
            raise ShotOrderError(
                f"every live shot of the project is listed exactly once: "
                f"missing {', '.join(missing)}"
            )
        self._shots_ordered(shot_ids=list(ordered))

    @property
    def known_shot_ids(self) -> list[UUID]:
        """Shots placed with their id (version-1 placements did not record it)."""
        return list(self.__dict__.get("shot_ids", ()))

    @event(ShotPlaced)
    def _shot_placed(self, position: int, shot_id: UUID | None) -> None:
        self.shots_placed = position + 1
        if shot_id is not None:
            self.shot_ids = [*self.known_shot_ids, shot_id]

    @event(ShotsOrdered)
    def _shots_ordered(self, shot_ids: list[UUID]) -> None:
        pass

    @event(Deleted)
    def _deleted(self) -> None:
        self.deleted = True

    @event(Restored)
    def _restored(self) -> None:
        self.deleted = False

    def is_owned_by(self, user_id: str) -> bool:
        return self.owner_id == user_id

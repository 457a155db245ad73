"""Shots: create, edit, delete and restore, their members and timeline, duplication."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID, uuid4

from domain.errors import (
    ShotNotFoundError,
)
from domain.metadata import CommandMeta
from domain.services.base import Decision, JsonObject, as_uuid
from domain.services.owned import OwnedReads
from domain.services.written import ShotMemberAdded, ShotMemberMoved, ShotsOrdered, ShotWritten
from domain.shot import Shot


class ShotServices(OwnedReads):
    """`user_id` is the acting user; `None` means a trusted caller (service key,
    worker, system). Another user's ids answer as not found, never forbidden,
    so nobody learns that they exist."""

    # -- shots -----------------------------------------------------------
    def create_shot(
        self,
        project_id: UUID,
        user_id: str | None,
        name: str,
        aspect_ratio: str | None = None,
        settings: JsonObject | None = None,
        generation_id: UUID | None = None,
        meta: CommandMeta | None = None,
    ) -> ShotWritten:
        """A new shot placed last; with `generation_id`, that image at frame 0 (atomic)."""

        def decide() -> Decision[ShotWritten]:
            project = self.live_project(project_id, user_id)
            shot = Shot.start(project.id, name, project.shots_placed, aspect_ratio, settings)
            project.take_shot_position(shot.id)
            if generation_id is None:
                return [project, shot], ShotWritten(shot_id=shot.id)
            generation = self._member_generation(generation_id, project.id)
            member = shot.add(uuid4(), generation.id, generation.media_type, frame=0)
            return [project, shot], ShotWritten(shot_id=shot.id, shot_generation_id=member.id)

        return self._command(meta, decide)

    def update_shot(
        self,
        shot_id: UUID,
        user_id: str | None,
        *,
        name: str | None = None,
        aspect_ratio: str | None = None,
        settings: JsonObject | None = None,
        meta: CommandMeta | None = None,
    ) -> ShotWritten:
        return self._on_shot(
            shot_id, user_id, meta, lambda s: s.update(name, aspect_ratio, settings)
        )

    def delete_shot(
        self, shot_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> ShotWritten:
        return self._on_shot(shot_id, user_id, meta, lambda s: s.delete())

    def restore_shot(
        self, shot_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> ShotWritten:
        return self._on_shot(shot_id, user_id, meta, lambda s: s.restore())

    def reorder_shot(
        self,
        shot_id: UUID,
        user_id: str | None,
        ordered_generation_ids: Sequence[UUID],
        meta: CommandMeta | None = None,
    ) -> ShotWritten:
        ordered = [as_uuid(g, "generation id") for g in ordered_generation_ids]
        return self._on_shot(shot_id, user_id, meta, lambda s: s.reorder(ordered))

    def fix_shot_spacing(
        self, shot_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> ShotWritten:
        return self._on_shot(shot_id, user_id, meta, lambda s: s.fix_spacing())

    def move_in_shot(
        self,
        shot_id: UUID,
        user_id: str | None,
        membership_id: UUID,
        frame: int,
        meta: CommandMeta | None = None,
    ) -> ShotWritten:
        member = as_uuid(membership_id, "shot_generation_id")
        return self._on_shot(shot_id, user_id, meta, lambda s: s.move(member, frame))

    def unposition_in_shot(
        self,
        shot_id: UUID,
        user_id: str | None,
        membership_id: UUID,
        meta: CommandMeta | None = None,
    ) -> ShotWritten:
        member = as_uuid(membership_id, "shot_generation_id")
        return self._on_shot(shot_id, user_id, meta, lambda s: s.unposition(member))

    def place_in_shot(
        self,
        shot_id: UUID,
        user_id: str | None,
        member_or_generation: UUID,
        frame: int | None,
        membership_only: bool = False,
        meta: CommandMeta | None = None,
    ) -> ShotMemberMoved:
        """Move a member to `frame` (None: off the timeline). The member is named by its
        membership id, or (unless `membership_only`) by its generation's id: the earliest
        appearance of that generation on the timeline."""
        ident = as_uuid(member_or_generation, "shot_generation_id")

        def decide() -> Decision[ShotMemberMoved]:
            shot = self.shot(shot_id, user_id)
            member = shot.membership(ident) if membership_only else shot.member_for(ident)
            if frame is None:
                shot.unposition(member.id)
            else:
                shot.move(member.id, frame)
            return [shot], ShotMemberMoved(
                shot_id=shot.id,
                shot_generation_id=member.id,
                generation_id=member.generation_id,
                timeline_frame=frame,
            )

        return self._command(meta, decide)

    def order_shots(
        self,
        project_id: UUID,
        user_id: str | None,
        shot_ids: Sequence[UUID],
        meta: CommandMeta | None = None,
    ) -> ShotsOrdered:
        """Positions 0..n-1 for a project's shots in this order (every live shot once)."""
        ordered = [as_uuid(s, "shot id") for s in shot_ids]

        def decide() -> Decision[ShotsOrdered]:
            project = self.live_project(project_id, user_id)
            shots: dict[UUID, Shot] = {}
            for candidate in dict.fromkeys([*project.known_shot_ids, *ordered]):
                try:
                    shot = self.shot(candidate)
                except ShotNotFoundError:
                    continue
                if shot.project_id == project.id and not shot.deleted:
                    shots[shot.id] = shot
            project.order_shots(ordered, set(shots))
            moved = [shots[s] for i, s in enumerate(ordered) if shots[s].place(i)]
            return [project, *moved], ShotsOrdered(project_id=project.id, shot_ids=tuple(ordered))

        return self._command(meta, decide)

    def remove_from_shot(
        self,
        shot_id: UUID,
        user_id: str | None,
        generation_or_member: UUID,
        meta: CommandMeta | None = None,
    ) -> ShotWritten:
        """Remove a membership by its id, or the earliest appearance of a generation."""
        ident = as_uuid(generation_or_member)

        def remove(shot: Shot) -> None:
            if any(m.id == ident for m in shot.members):
                shot.remove(ident)
            else:
                shot.remove_generation(ident)

        return self._on_shot(shot_id, user_id, meta, remove)

    def add_to_shot(
        self,
        shot_id: UUID,
        user_id: str | None,
        generation_id: UUID,
        with_position: bool = True,
        timeline_frame: int | None = None,
        metadata: JsonObject | None = None,
        meta: CommandMeta | None = None,
    ) -> ShotMemberAdded:
        def decide() -> Decision[ShotMemberAdded]:
            shot = self.shot(shot_id, user_id)
            generation = self._member_generation(generation_id, shot.project_id)
            member = shot.add(
                uuid4(),
                generation.id,
                generation.media_type,
                with_position,
                timeline_frame,
                metadata,
            )
            return [shot], ShotMemberAdded(
                shot_id=shot.id,
                shot_generation_id=member.id,
                timeline_frame=member.timeline_frame,
            )

        return self._command(meta, decide)

    def duplicate_shot(
        self, shot_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> ShotWritten:
        def decide() -> Decision[ShotWritten]:
            source = self.shot(shot_id, user_id)
            source.ensure_live()
            project = self.live_project(source.project_id)
            copy = Shot.start(
                project.id,
                f"{source.name} (copy)",
                project.shots_placed,
                source.aspect_ratio,
                source.settings,
            )
            project.take_shot_position(copy.id)
            for m in source.copyable_members():
                if self.generation(m.generation_id).deleted:
                    continue  # a deleted generation has left the shot
                copy.add(
                    uuid4(),
                    m.generation_id,
                    m.media_type,
                    frame=m.timeline_frame,
                    metadata=m.metadata,
                )
            return [project, copy], ShotWritten(shot_id=copy.id)

        return self._command(meta, decide)

    def _on_shot(
        self,
        shot_id: UUID,
        user_id: str | None,
        meta: CommandMeta | None,
        change: Callable[[Shot], object],
    ) -> ShotWritten:
        def decide() -> Decision[ShotWritten]:
            shot = self.shot(shot_id, user_id)
            change(shot)
            return [shot], ShotWritten(shot_id=shot.id)

        return self._command(meta, decide)

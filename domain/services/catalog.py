"""Projects, shots and generations: the gallery side of the studio."""

from __future__ import annotations

from contextlib import suppress
from typing import Any
from uuid import UUID, uuid4

from domain.errors import (
    GenerationNotFoundError,
    ProjectNotFoundError,
    ShotNotFoundError,
    ValidationError,
)
from domain.generation import KEEP, ORIGINAL, Generation
from domain.metadata import CommandMeta
from domain.project import DEFAULT_PROJECT_NAME, Project
from domain.services.base import Result, ServiceBase, as_uuid, now
from domain.shot import Shot

OWNERS_KEPT = 100_000  # ≈ 15 MB at most per process


class CatalogServices(ServiceBase):
    """Verb methods for projects, shots and generations.

    `user_id` is the acting user; `None` means a trusted caller (service key,
    worker, system). Another user's ids answer as not found, never forbidden,
    so nobody learns that they exist.
    """

    # -- loading with ownership ----------------------------------------
    def project(self, project_id: object, user_id: str | None = None) -> Project:
        project = self._load(project_id, Project, ProjectNotFoundError)
        if user_id is not None and project.owner_id != user_id:
            raise ProjectNotFoundError(project.id)
        return project

    def live_project(self, project_id: object, user_id: str | None = None) -> Project:
        project = self.project(project_id, user_id)
        if project.deleted:
            raise ProjectNotFoundError(project.id)
        return project

    def shot(self, shot_id: object, user_id: str | None = None) -> Shot:
        shot = self._load(shot_id, Shot, ShotNotFoundError)
        if user_id is not None and self.owner_of(shot.project_id) != user_id:
            raise ShotNotFoundError(shot.id)
        return shot

    def generation(self, generation_id: object, user_id: str | None = None) -> Generation:
        generation = self._load(generation_id, Generation, GenerationNotFoundError)
        if user_id is not None and self.owner_of(generation.project_id) != user_id:
            raise GenerationNotFoundError(generation.id)
        return generation

    def owner_of(self, project_id: UUID) -> str:
        """A project's owner never changes: remembered, for the last `OWNERS_KEPT` projects."""
        cache: dict[UUID, str] = self.__dict__.setdefault("_owners", {})
        owner = cache.pop(project_id, None)
        if owner is None:
            owner = self.project(project_id).owner_id
            if len(cache) >= OWNERS_KEPT:
                with suppress(RuntimeError):  # another thread resized it: evict next time
                    cache.pop(next(iter(cache), None), None)  # type: ignore[arg-type]
        cache[project_id] = owner  # most recently used last
        return owner

    # -- projects --------------------------------------------------------
    def create_project(
        self,
        user_id: str,
        name: str,
        aspect_ratio: str = "16:9",
        settings: dict[str, Any] | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        def decide() -> Any:
            project = Project.start(user_id, name, aspect_ratio, settings)
            return [project], {"project_id": str(project.id)}

        return self._command(meta, decide)

    def create_default_project(self, user_id: str, meta: CommandMeta | None = None) -> Result:
        meta = meta or CommandMeta.for_user(user_id, idempotency_key="default-project")
        return self.create_project(user_id, DEFAULT_PROJECT_NAME, meta=meta)

    def update_project(
        self,
        project_id: object,
        user_id: str | None,
        *,
        name: str | None = None,
        aspect_ratio: str | None = None,
        settings: dict[str, Any] | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        def decide() -> Any:
            project = self.live_project(project_id, user_id)
            project.update(name, aspect_ratio, settings)
            return [project], {"project_id": str(project.id)}

        return self._command(meta, decide)

    def delete_project(
        self, project_id: object, user_id: str | None, meta: CommandMeta | None = None
    ) -> Result:
        def decide() -> Any:
            project = self.live_project(project_id, user_id)
            project.delete()
            return [project], {"project_id": str(project.id)}

        return self._command(meta, decide)

    def restore_project(
        self, project_id: object, user_id: str | None, meta: CommandMeta | None = None
    ) -> Result:
        def decide() -> Any:
            project = self.project(project_id, user_id)
            project.restore()
            return [project], {"project_id": str(project.id)}

        return self._command(meta, decide)

    # -- shots -----------------------------------------------------------
    def create_shot(
        self,
        project_id: object,
        user_id: str | None,
        name: str,
        aspect_ratio: str | None = None,
        settings: dict[str, Any] | None = None,
        generation_id: object | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """A new shot placed last; with `generation_id`, that image at frame 0 (atomic)."""

        def decide() -> Any:
            project = self.live_project(project_id, user_id)
            shot = Shot.start(project.id, name, project.shots_placed, aspect_ratio, settings)
            project.take_shot_position(shot.id)
            result: Result = {"shot_id": str(shot.id)}
            if generation_id is not None:
                generation = self._member_generation(generation_id, project.id)
                member = shot.add(uuid4(), generation.id, generation.media_type, frame=0)
                result["shot_generation_id"] = str(member.id)
            return [project, shot], result

        return self._command(meta, decide)

    def update_shot(
        self,
        shot_id: object,
        user_id: str | None,
        *,
        name: str | None = None,
        aspect_ratio: str | None = None,
        settings: dict[str, Any] | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        return self._on_shot(
            shot_id, user_id, meta, lambda s: s.update(name, aspect_ratio, settings)
        )

    def delete_shot(
        self, shot_id: object, user_id: str | None, meta: CommandMeta | None = None
    ) -> Result:
        return self._on_shot(shot_id, user_id, meta, lambda s: s.delete())

    def restore_shot(
        self, shot_id: object, user_id: str | None, meta: CommandMeta | None = None
    ) -> Result:
        return self._on_shot(shot_id, user_id, meta, lambda s: s.restore())

    def reorder_shot(
        self,
        shot_id: object,
        user_id: str | None,
        ordered_generation_ids: list[object],
        meta: CommandMeta | None = None,
    ) -> Result:
        ordered = [as_uuid(g, "generation id") for g in ordered_generation_ids]
        return self._on_shot(shot_id, user_id, meta, lambda s: s.reorder(ordered))

    def fix_shot_spacing(
        self, shot_id: object, user_id: str | None, meta: CommandMeta | None = None
    ) -> Result:
        return self._on_shot(shot_id, user_id, meta, lambda s: s.fix_spacing())

    def move_in_shot(
        self,
        shot_id: object,
        user_id: str | None,
        membership_id: object,
        frame: int,
        meta: CommandMeta | None = None,
    ) -> Result:
        member = as_uuid(membership_id, "shot_generation_id")
        return self._on_shot(shot_id, user_id, meta, lambda s: s.move(member, frame))

    def unposition_in_shot(
        self,
        shot_id: object,
        user_id: str | None,
        membership_id: object,
        meta: CommandMeta | None = None,
    ) -> Result:
        member = as_uuid(membership_id, "shot_generation_id")
        return self._on_shot(shot_id, user_id, meta, lambda s: s.unposition(member))

    def place_in_shot(
        self,
        shot_id: object,
        user_id: str | None,
        member_or_generation: object,
        frame: int | None,
        membership_only: bool = False,
        meta: CommandMeta | None = None,
    ) -> Result:
        """Move a member to `frame` (None: off the timeline). The member is named by its
        membership id, or (unless `membership_only`) by its generation's id: the earliest
        appearance of that generation on the timeline."""
        ident = as_uuid(member_or_generation, "shot_generation_id")

        def decide() -> Any:
            shot = self.shot(shot_id, user_id)
            member = shot.membership(ident) if membership_only else shot.member_for(ident)
            if frame is None:
                shot.unposition(member.id)
            else:
                shot.move(member.id, frame)
            return [shot], {
                "shot_id": str(shot.id),
                "shot_generation_id": str(member.id),
                "generation_id": str(member.generation_id),
                "timeline_frame": frame,
            }

        return self._command(meta, decide)

    def order_shots(
        self,
        project_id: object,
        user_id: str | None,
        shot_ids: list[object],
        meta: CommandMeta | None = None,
    ) -> Result:
        """Positions 0..n-1 for a project's shots in this order (every live shot once)."""
        ordered = [as_uuid(s, "shot id") for s in shot_ids]

        def decide() -> Any:
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
            return [project, *moved], {
                "project_id": str(project.id),
                "shot_ids": [str(s) for s in ordered],
            }

        return self._command(meta, decide)

    def remove_from_shot(
        self,
        shot_id: object,
        user_id: str | None,
        generation_or_member: object,
        meta: CommandMeta | None = None,
    ) -> Result:
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
        shot_id: object,
        user_id: str | None,
        generation_id: object,
        with_position: bool = True,
        timeline_frame: int | None = None,
        metadata: dict[str, Any] | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        def decide() -> Any:
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
            return [shot], {
                "shot_id": str(shot.id),
                "shot_generation_id": str(member.id),
                "timeline_frame": member.timeline_frame,
            }

        return self._command(meta, decide)

    def duplicate_shot(
        self, shot_id: object, user_id: str | None, meta: CommandMeta | None = None
    ) -> Result:
        def decide() -> Any:
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
            return [project, copy], {"shot_id": str(copy.id)}

        return self._command(meta, decide)

    def _on_shot(
        self, shot_id: object, user_id: str | None, meta: CommandMeta | None, change: Any
    ) -> Result:
        def decide() -> Any:
            shot = self.shot(shot_id, user_id)
            change(shot)
            return [shot], {"shot_id": str(shot.id)}

        return self._command(meta, decide)

    def _member_generation(self, generation_id: object, project_id: UUID) -> Generation:
        generation = self.generation(generation_id)
        if generation.project_id != project_id or generation.deleted:
            raise GenerationNotFoundError(generation.id)
        return generation

    # -- generations -----------------------------------------------------
    def create_generation(
        self,
        project_id: object,
        user_id: str | None,
        location: str,
        media_type: str = "image",
        *,
        thumbnail_url: str | None = None,
        name: str | None = None,
        params: dict[str, Any] | None = None,
        based_on: object | None = None,
        shot_id: object | None = None,
        with_position: bool = True,
        meta: CommandMeta | None = None,
    ) -> Result:
        """An upload: a generation with a viewed `original` primary variant."""

        def decide() -> Any:
            project = self.live_project(project_id, user_id)
            source = self._member_generation(based_on, project.id).id if based_on else None
            generation = Generation.start(
                project.id, media_type, now(), name=name, params=params, based_on=source
            )
            variant = generation.add_variant(
                uuid4(),
                location,
                now(),
                variant_type=ORIGINAL,
                thumbnail_url=thumbnail_url,
                params=params,
                make_primary=True,
                viewed=True,
            )
            saved: list[Any] = [generation]
            result: Result = {"generation_id": str(generation.id), "variant_id": str(variant.id)}
            if shot_id is not None:
                shot = self.shot(shot_id, user_id)
                if shot.project_id != project.id:
                    raise ShotNotFoundError(shot.id)
                member = shot.add(uuid4(), generation.id, media_type, with_position)
                result["shot_generation_id"] = str(member.id)
                saved.append(shot)
            return saved, result

        return self._command(meta, decide)

    def update_generation(
        self,
        generation_id: object,
        user_id: str | None,
        *,
        starred: bool | None = None,
        name: object = KEEP,
        meta: CommandMeta | None = None,
    ) -> Result:
        """Star and/or rename in one command: one save, one idempotency key for both."""

        def change(generation: Generation) -> None:
            if starred is not None:
                generation.star(starred)
            if name is not KEEP:
                generation.rename(name)  # type: ignore[arg-type]

        return self._on_generation(generation_id, user_id, meta, change)

    def star_generation(
        self,
        generation_id: object,
        user_id: str | None,
        starred: bool,
        meta: CommandMeta | None = None,
    ) -> Result:
        return self._on_generation(generation_id, user_id, meta, lambda g: g.star(starred))

    def rename_generation(
        self,
        generation_id: object,
        user_id: str | None,
        name: str | None,
        meta: CommandMeta | None = None,
    ) -> Result:
        return self._on_generation(generation_id, user_id, meta, lambda g: g.rename(name))

    def delete_generation(
        self, generation_id: object, user_id: str | None, meta: CommandMeta | None = None
    ) -> Result:
        """Soft delete; the children of a composite video go with it."""

        def decide() -> Any:
            generation = self.generation(generation_id, user_id)
            generation.delete()
            children = [self.generation(c) for c in generation.children.values()]
            for child in children:
                if not child.deleted:
                    child.delete()
            return [generation, *children], {"generation_id": str(generation.id)}

        return self._command(meta, decide)

    def restore_generation(
        self, generation_id: object, user_id: str | None, meta: CommandMeta | None = None
    ) -> Result:
        """Undo a soft delete; a composite video's children come back with it, and so do
        its shot memberships (they were hidden, never removed). A child comes back only
        with its parent, and nothing comes back into a deleted project."""

        def decide() -> Any:
            generation = self.generation(generation_id, user_id)
            self.live_project(generation.project_id)
            if generation.parent_generation_id is not None and generation.deleted:
                parent = self.generation(generation.parent_generation_id)
                if parent.deleted:
                    raise ValidationError(
                        f"generation {generation.id} is a child of deleted generation "
                        f"{parent.id}: restore the parent"
                    )
            generation.restore()
            children = [self.generation(c) for c in generation.children.values()]
            for child in children:
                if child.deleted:
                    child.restore()
            return [generation, *children], {"generation_id": str(generation.id)}

        return self._command(meta, decide)

    def add_variant(
        self,
        generation_id: object,
        user_id: str | None,
        location: str,
        *,
        variant_type: str = "edit",
        thumbnail_url: str | None = None,
        params: dict[str, Any] | None = None,
        name: str | None = None,
        make_primary: bool = False,
        meta: CommandMeta | None = None,
    ) -> Result:
        if variant_type == ORIGINAL:
            raise ValidationError("an original variant is only made with its generation")

        def decide() -> Any:
            generation = self.generation(generation_id, user_id)
            variant = generation.add_variant(
                uuid4(),
                location,
                now(),
                variant_type=variant_type,
                thumbnail_url=thumbnail_url,
                params=params,
                name=name,
                make_primary=make_primary,
                viewed=True,
            )
            return [generation], {
                "generation_id": str(generation.id),
                "variant_id": str(variant.id),
            }

        return self._command(meta, decide)

    def make_variant_primary(
        self,
        generation_id: object,
        user_id: str | None,
        variant_id: object,
        meta: CommandMeta | None = None,
    ) -> Result:
        ident = as_uuid(variant_id, "variant id")
        return self._on_generation(generation_id, user_id, meta, lambda g: g.make_primary(ident))

    def delete_variant(
        self,
        generation_id: object,
        user_id: str | None,
        variant_id: object,
        meta: CommandMeta | None = None,
    ) -> Result:
        ident = as_uuid(variant_id, "variant id")
        return self._on_generation(generation_id, user_id, meta, lambda g: g.delete_variant(ident))

    def mark_variant_viewed(
        self,
        generation_id: object,
        user_id: str | None,
        variant_id: object,
        meta: CommandMeta | None = None,
    ) -> Result:
        ident = as_uuid(variant_id, "variant id")
        return self._on_generation(generation_id, user_id, meta, lambda g: g.mark_viewed(ident))

    def update_variant(
        self,
        generation_id: object,
        user_id: str | None,
        variant_id: object,
        *,
        viewed: bool | None = None,
        starred: bool | None = None,
        name: object = KEEP,
        meta: CommandMeta | None = None,
    ) -> Result:
        """The variant's "NEW" badge (`viewed`), star and name in one command; a change
        to nothing writes nothing."""
        ident = as_uuid(variant_id, "variant id")

        def decide() -> Any:
            generation = self.generation(generation_id, user_id)
            variant = generation.edit_variant(ident, viewed=viewed, starred=starred, name=name)
            return [generation], {
                "generation_id": str(generation.id),
                "variant_id": str(variant.id),
                "viewed": variant.viewed,
                "starred": variant.starred,
                "name": variant.name,
            }

        return self._command(meta, decide)

    def _on_generation(
        self, generation_id: object, user_id: str | None, meta: CommandMeta | None, change: Any
    ) -> Result:
        def decide() -> Any:
            generation = self.generation(generation_id, user_id)
            change(generation)
            return [generation], {"generation_id": str(generation.id)}

        return self._command(meta, decide)

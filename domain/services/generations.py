"""Generations and their variants: create, edit, star, delete and restore."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from uuid import UUID, uuid4

from domain.errors import (
    ShotNotFoundError,
    ValidationError,
)
from domain.generation import KEEP, ORIGINAL, Generation
from domain.metadata import CommandMeta
from domain.services.base import Decision, JsonObject, as_uuid, now
from domain.services.owned import OwnedReads
from domain.services.written import GenerationWritten, VariantUpdated, VariantWritten


class GenerationServices(OwnedReads):
    """`user_id` is the acting user; `None` means a trusted caller (service key,
    worker, system). Another user's ids answer as not found, never forbidden,
    so nobody learns that they exist."""

    # -- generations -----------------------------------------------------
    def create_generation(
        self,
        project_id: UUID,
        user_id: str | None,
        location: str,
        media_type: str = "image",
        *,
        thumbnail_url: str | None = None,
        name: str | None = None,
        params: JsonObject | None = None,
        based_on: UUID | None = None,
        shot_id: UUID | None = None,
        with_position: bool = True,
        meta: CommandMeta | None = None,
    ) -> VariantWritten:
        """An upload: a generation with a viewed `original` primary variant."""

        def decide() -> Decision[VariantWritten]:
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
            made = VariantWritten(generation_id=generation.id, variant_id=variant.id)
            if shot_id is None:
                return [generation], made
            shot = self.shot(shot_id, user_id)
            if shot.project_id != project.id:
                raise ShotNotFoundError(shot.id)
            member = shot.add(uuid4(), generation.id, media_type, with_position)
            return [generation, shot], replace(made, shot_generation_id=member.id)

        return self._command(meta, decide)

    def update_generation(
        self,
        generation_id: UUID,
        user_id: str | None,
        *,
        starred: bool | None = None,
        name: str | None = KEEP,
        meta: CommandMeta | None = None,
    ) -> GenerationWritten:
        """Star and/or rename in one command: one save, one idempotency key for both."""

        def change(generation: Generation) -> None:
            if starred is not None:
                generation.star(starred)
            if name is not KEEP:
                generation.rename(name)

        return self._on_generation(generation_id, user_id, meta, change)

    def star_generation(
        self,
        generation_id: UUID,
        user_id: str | None,
        starred: bool,
        meta: CommandMeta | None = None,
    ) -> GenerationWritten:
        return self._on_generation(generation_id, user_id, meta, lambda g: g.star(starred))

    def rename_generation(
        self,
        generation_id: UUID,
        user_id: str | None,
        name: str | None,
        meta: CommandMeta | None = None,
    ) -> GenerationWritten:
        return self._on_generation(generation_id, user_id, meta, lambda g: g.rename(name))

    def delete_generation(
        self, generation_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> GenerationWritten:
        """Soft delete; the children of a composite video go with it."""

        def decide() -> Decision[GenerationWritten]:
            generation = self.generation(generation_id, user_id)
            generation.delete()
            children = [self.generation(c) for c in generation.children.values()]
            for child in children:
                if not child.deleted:
                    child.delete()
            return [generation, *children], GenerationWritten(generation_id=generation.id)

        return self._command(meta, decide)

    def restore_generation(
        self, generation_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> GenerationWritten:
        """Undo a soft delete; a composite video's children come back with it, and so do
        its shot memberships (they were hidden, never removed). A child comes back only
        with its parent, and nothing comes back into a deleted project."""

        def decide() -> Decision[GenerationWritten]:
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
            return [generation, *children], GenerationWritten(generation_id=generation.id)

        return self._command(meta, decide)

    def add_variant(
        self,
        generation_id: UUID,
        user_id: str | None,
        location: str,
        *,
        variant_type: str = "edit",
        thumbnail_url: str | None = None,
        params: JsonObject | None = None,
        name: str | None = None,
        make_primary: bool = False,
        meta: CommandMeta | None = None,
    ) -> VariantWritten:
        if variant_type == ORIGINAL:
            raise ValidationError("an original variant is only made with its generation")

        def decide() -> Decision[VariantWritten]:
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
            return [generation], VariantWritten(generation_id=generation.id, variant_id=variant.id)

        return self._command(meta, decide)

    def make_variant_primary(
        self,
        generation_id: UUID,
        user_id: str | None,
        variant_id: UUID,
        meta: CommandMeta | None = None,
    ) -> GenerationWritten:
        ident = as_uuid(variant_id, "variant id")
        return self._on_generation(generation_id, user_id, meta, lambda g: g.make_primary(ident))

    def delete_variant(
        self,
        generation_id: UUID,
        user_id: str | None,
        variant_id: UUID,
        meta: CommandMeta | None = None,
    ) -> GenerationWritten:
        ident = as_uuid(variant_id, "variant id")
        return self._on_generation(generation_id, user_id, meta, lambda g: g.delete_variant(ident))

    def mark_variant_viewed(
        self,
        generation_id: UUID,
        user_id: str | None,
        variant_id: UUID,
        meta: CommandMeta | None = None,
    ) -> GenerationWritten:
        ident = as_uuid(variant_id, "variant id")
        return self._on_generation(generation_id, user_id, meta, lambda g: g.mark_viewed(ident))

    def update_variant(
        self,
        generation_id: UUID,
        user_id: str | None,
        variant_id: UUID,
        *,
        viewed: bool | None = None,
        starred: bool | None = None,
        name: str | None = KEEP,
        meta: CommandMeta | None = None,
    ) -> VariantUpdated:
        """The variant's "NEW" badge (`viewed`), star and name in one command; a change
        to nothing writes nothing."""
        ident = as_uuid(variant_id, "variant id")

        def decide() -> Decision[VariantUpdated]:
            generation = self.generation(generation_id, user_id)
            variant = generation.edit_variant(ident, viewed=viewed, starred=starred, name=name)
            return [generation], VariantUpdated(
                generation_id=generation.id,
                variant_id=variant.id,
                viewed=variant.viewed,
                starred=variant.starred,
                name=variant.name,
            )

        return self._command(meta, decide)

    def _on_generation(
        self,
        generation_id: UUID,
        user_id: str | None,
        meta: CommandMeta | None,
        change: Callable[[Generation], object],
    ) -> GenerationWritten:
        def decide() -> Decision[GenerationWritten]:
            generation = self.generation(generation_id, user_id)
            change(generation)
            return [generation], GenerationWritten(generation_id=generation.id)

        return self._command(meta, decide)

"""Loading the gallery's aggregates as their owner: another user's ids answer as not
found, never forbidden, so nobody learns that they exist."""

from __future__ import annotations

from contextlib import suppress
from uuid import UUID

from domain.errors import (
    GenerationNotFoundError,
    ProjectNotFoundError,
    ShotNotFoundError,
)
from domain.generation import Generation
from domain.project import Project
from domain.services.base import ServiceBase
from domain.shot import Shot

OWNERS_KEPT = 100_000  # ≈ 15 MB at most per process


class OwnedReads(ServiceBase):
    """`user_id` is the acting user; `None` means a trusted caller (service key,
    worker, system). Another user's ids answer as not found, never forbidden,
    so nobody learns that they exist."""

    # -- loading with ownership ----------------------------------------
    def project(self, project_id: UUID, user_id: str | None = None) -> Project:
        project = self._load(project_id, Project, ProjectNotFoundError)
        if user_id is not None and project.owner_id != user_id:
            raise ProjectNotFoundError(project.id)
        return project

    def live_project(self, project_id: UUID, user_id: str | None = None) -> Project:
        project = self.project(project_id, user_id)
        if project.deleted:
            raise ProjectNotFoundError(project.id)
        return project

    def shot(self, shot_id: UUID, user_id: str | None = None) -> Shot:
        shot = self._load(shot_id, Shot, ShotNotFoundError)
        if user_id is not None and self.owner_of(shot.project_id) != user_id:
            raise ShotNotFoundError(shot.id)
        return shot

    def generation(self, generation_id: UUID, user_id: str | None = None) -> Generation:
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

    def _member_generation(self, generation_id: UUID, project_id: UUID) -> Generation:
        generation = self.generation(generation_id)
        if generation.project_id != project_id or generation.deleted:
            raise GenerationNotFoundError(generation.id)
        return generation

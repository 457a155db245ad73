"""Projects, shots and generations: the gallery side of the studio (shots in
`shots.py`, generations and variants in `generations.py`, owned reads in `owned.py`)."""

from __future__ import annotations

from uuid import UUID

from domain.metadata import CommandMeta
from domain.project import DEFAULT_PROJECT_NAME, Project
from domain.services.base import Decision, JsonObject
from domain.services.generations import GenerationServices
from domain.services.owned import OWNERS_KEPT, OwnedReads
from domain.services.shots import ShotServices
from domain.services.written import ProjectWritten

__all__ = ["OWNERS_KEPT", "CatalogServices", "OwnedReads"]


class CatalogServices(ShotServices, GenerationServices):
    """Verb methods for projects, shots and generations.

    `user_id` is the acting user; `None` means a trusted caller (service key,
    worker, system). Another user's ids answer as not found, never forbidden,
    so nobody learns that they exist.
    """

    # -- projects --------------------------------------------------------
    def create_project(
        self,
        user_id: str,
        name: str,
        aspect_ratio: str = "16:9",
        settings: JsonObject | None = None,
        meta: CommandMeta | None = None,
    ) -> ProjectWritten:
        def decide() -> Decision[ProjectWritten]:
            project = Project.start(user_id, name, aspect_ratio, settings)
            return [project], ProjectWritten(project_id=project.id)

        return self._command(meta, decide)

    def create_default_project(
        self, user_id: str, meta: CommandMeta | None = None
    ) -> ProjectWritten:
        meta = meta or CommandMeta.for_user(user_id, idempotency_key="default-project")
        return self.create_project(user_id, DEFAULT_PROJECT_NAME, meta=meta)

    def update_project(
        self,
        project_id: UUID,
        user_id: str | None,
        *,
        name: str | None = None,
        aspect_ratio: str | None = None,
        settings: JsonObject | None = None,
        meta: CommandMeta | None = None,
    ) -> ProjectWritten:
        def decide() -> Decision[ProjectWritten]:
            project = self.live_project(project_id, user_id)
            project.update(name, aspect_ratio, settings)
            return [project], ProjectWritten(project_id=project.id)

        return self._command(meta, decide)

    def delete_project(
        self, project_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> ProjectWritten:
        def decide() -> Decision[ProjectWritten]:
            project = self.live_project(project_id, user_id)
            project.delete()
            return [project], ProjectWritten(project_id=project.id)

        return self._command(meta, decide)

    def restore_project(
        self, project_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> ProjectWritten:
        def decide() -> Decision[ProjectWritten]:
            project = self.project(project_id, user_id)
            project.restore()
            return [project], ProjectWritten(project_id=project.id)

        return self._command(meta, decide)

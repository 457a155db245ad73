"""Resources: a user's LoRAs (uploaded files or URLs), and the LoRAs a task names.

A task's `params.loras` is a list of `{resource_id | path, strength}`. At creation each
`resource_id` must name a live resource of the project's owner (else 404, nothing
written) and is resolved to the `path` a worker reads (the stored file's `/media/...`
location, or the URL); a bare `path` (a media location or URL) is kept as given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING
from uuid import UUID

from domain.errors import InvalidParamsError, ResourceNotFoundError
from domain.metadata import CommandMeta
from domain.resource import Resource
from domain.services.base import Decision, ServiceBase, as_uuid, now
from domain.services.written import ResourceDeleted, ResourceWritten

if TYPE_CHECKING:
    from domain.services.lifecycle import Batch

MAX_LORAS = 20
MAX_STRENGTH = 10.0


class ResourceServices(ServiceBase):
    """Register, read and delete a user's resources."""

    def add_resource(
        self,
        user_id: str,
        kind: str,
        name: str,
        *,
        location: str | None = None,
        url: str | None = None,
        size: int | None = None,
        sha256: str | None = None,
        metadata: Mapping[str, object] | None = None,
        meta: CommandMeta | None = None,
    ) -> ResourceWritten:
        """A new resource of `user_id`: a stored file (`location`) or a `url`."""

        def decide() -> Decision[ResourceWritten]:
            resource = Resource.register(
                user_id,
                kind,
                name,
                location=location,
                url=url,
                size=size,
                sha256=sha256,
                metadata=dict(metadata or {}),
                at=now(),
            )
            return [resource], ResourceWritten(id=resource.id)

        return self._command(meta, decide)

    def resource(self, resource_id: UUID, user_id: str | None = None) -> Resource:
        """A live resource; another user's (or a deleted one) is not found."""
        resource = self._load(resource_id, Resource, ResourceNotFoundError)
        resource.require_visible_to(user_id)
        return resource

    def delete_resource(
        self, resource_id: UUID, user_id: str | None, meta: CommandMeta | None = None
    ) -> ResourceDeleted:
        def decide() -> Decision[ResourceDeleted]:
            resource = self.resource(resource_id, user_id)
            resource.delete(now())
            return [resource], ResourceDeleted(id=resource.id, location=resource.location)

        return self._command(meta, decide)


def with_loras(batch: Batch, owner_id: str, params: Mapping[str, object]) -> Mapping[str, object]:
    """`params` with each LoRA checked and its `resource_id` resolved to a `path`; the
    same object when there are none."""
    loras = params.get("loras")
    if loras is None:
        return params
    if not isinstance(loras, list) or len(loras) > MAX_LORAS:
        raise InvalidParamsError(
            f"params.loras must be a list of at most {MAX_LORAS} LoRAs (got {loras!r})"
        )
    return {**params, "loras": [_lora(batch, owner_id, i, lora) for i, lora in enumerate(loras)]}


def _lora(batch: Batch, owner_id: str, index: int, lora: object) -> dict[str, object]:
    where = f"params.loras[{index}]"
    if not isinstance(lora, Mapping):
        raise InvalidParamsError(f"{where} must be an object (got {lora!r})")
    strength = lora.get("strength", 1.0)
    if (
        isinstance(strength, bool)
        or not isinstance(strength, int | float)
        or not math.isfinite(strength)
        or abs(strength) > MAX_STRENGTH
    ):
        raise InvalidParamsError(
            f"{where}.strength must be a number in "
            f"[-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}] (got {strength!r})"
        )
    resolved = {**lora, "strength": float(strength)}
    if lora.get("resource_id") is not None:
        ident = as_uuid(lora["resource_id"], f"{where}.resource_id")
        resource = batch.load(ident, Resource, ResourceNotFoundError)
        resource.require_visible_to(owner_id)
        return {
            **resolved,
            "resource_id": str(ident),
            "path": resource.source,
            "name": resource.name,
        }
    path = lora.get("path")
    if not isinstance(path, str) or not path.strip():
        raise InvalidParamsError(f"{where} needs a resource_id or a path (got {lora!r})")
    return resolved

"""Soft delete, shared by projects, shots and generations.

Each aggregate keeps its own `Deleted`/`Restored` events (fixed topics) and the
`_deleted`/`_restored` methods that assign `deleted`; the decisions live here.
"""

from __future__ import annotations

from typing import Any

from domain.errors import DeletedError, ValidationError


class SoftDeletable:
    KIND = "aggregate"
    deleted: bool
    id: Any

    def _deleted(self) -> None:  # pragma: no cover - replaced by each aggregate's @event
        raise NotImplementedError

    def _restored(self) -> None:  # pragma: no cover - replaced by each aggregate's @event
        raise NotImplementedError

    def delete(self) -> None:
        self.ensure_live()
        self._deleted()

    def restore(self) -> None:
        if not self.deleted:
            raise ValidationError(f"{self.KIND} {self.id} is not deleted")
        self._restored()

    def ensure_live(self) -> None:
        if self.deleted:
            raise DeletedError(f"{self.KIND} {self.id} is deleted")

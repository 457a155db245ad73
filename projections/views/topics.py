"""What a websocket topic starts from: each topic kind's snapshot query, owned by the
view module whose tables it reads. Run them inside `projections.reading.snapshot`
so the rows are exactly as of the positions it yields."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from projections.views.credits import credits_snapshot
from projections.views.projects import project_snapshot
from projections.views.shots import shot_snapshot
from projections.views.tasks import tasks_snapshot
from projections.views.variants import generation_snapshot

if TYPE_CHECKING:
    import psycopg

SNAPSHOTS: dict[str, Callable[[psycopg.Connection[Any], str], Any]] = {
    "project": project_snapshot,
    "shot": shot_snapshot,
    "generation": generation_snapshot,
    "tasks": tasks_snapshot,
    "credits": credits_snapshot,
}


def snapshot_of(conn: psycopg.Connection[Any], kind: str, key: str) -> Any:
    """The snapshot of topic `<kind>:<key>` (a kind the protocol checked: project, shot,
    generation, tasks or credits)."""
    query: Callable[[psycopg.Connection[Any], str], Any] | None = SNAPSHOTS.get(kind)
    return (query or credits_snapshot)(conn, key)

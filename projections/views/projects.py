"""Projects: one row per project (soft-deleted ones kept and flagged)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.project import Project
from projections.engine.writes import Op, split
from projections.views.base import Context, Row, View, handles, iso, jsonable_row
from projections.views.gallery import all_generations
from projections.views.shots import shots_of_project

if TYPE_CHECKING:
    import psycopg

COLUMNS = (
    "id",
    "owner_id",
    "name",
    "aspect_ratio",
    "settings",
    "deleted",
    "created_at",
    "updated_at",
    "log_position",
)
JSON_COLUMNS = frozenset({"settings"})
EVENTS = (Project.Created, Project.Updated, Project.Deleted, Project.Restored)


def render(p: Project, position: int) -> Row:
    return {
        "id": str(p.id),
        "owner_id": p.owner_id,
        "name": p.name,
        "aspect_ratio": p.aspect_ratio,
        "settings": p.settings,
        "deleted": p.deleted,
        "created_at": iso(p.created_on),
        "updated_at": iso(p.modified_on),
        "log_position": position,
    }


class ProjectsView(View):
    name = "projects"
    tables = ("projects",)

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[UUID, Row] = {}

    def ddl(self, names: dict[str, str]) -> list[str]:
        t = names["projects"]
        return [
            f"""CREATE TABLE IF NOT EXISTS "{t}" (
                id uuid PRIMARY KEY, owner_id text NOT NULL, name text NOT NULL,
                aspect_ratio text NOT NULL, settings jsonb NOT NULL, deleted boolean NOT NULL,
                created_at timestamptz, updated_at timestamptz, log_position bigint NOT NULL)""",
            f'CREATE INDEX IF NOT EXISTS "{t}_owner" ON "{t}" (owner_id, created_at)',
        ]

    @handles(*EVENTS)
    def on_project(self, event: Any, p: Project, _: Any, ctx: Context) -> None:
        row = render(p, ctx.position)
        self.pending[p.id] = row
        if isinstance(event, Project.Created):
            self.new.add(p.id)
        if isinstance(event, Project.Deleted):
            ctx.emit(f"project:{p.id}", "project.removed", {"id": row["id"]})
        elif not p.deleted:
            ctx.emit(f"project:{p.id}", "project.upserted", row)

    def refresh(self, event: Any, ctx: Context) -> None:
        p = ctx.aggregates.current(event.originator_id)
        if isinstance(p, Project):
            self.on_project(event, p, None, ctx)

    def take(self) -> list[Op]:
        pending, new, self.pending, self.new = self.pending, self.new, {}, set()
        return split("projects", COLUMNS, ("id",), pending, new, JSON_COLUMNS)

    def has_pending(self) -> bool:
        return bool(self.pending)


def projects_of(
    conn: psycopg.Connection[Any], owner_id: str, *, deleted: bool = False
) -> list[Row]:
    """A user's live projects, oldest first; with `deleted`, the deleted ones instead,
    most recently deleted first."""
    order = "updated_at DESC, id" if deleted else "created_at, id"
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM projects WHERE owner_id = %s AND "
        f"{'' if deleted else 'NOT '}deleted ORDER BY {order}",
        (owner_id,),
    ).fetchall()
    return [jsonable_row(r) for r in rows]


def project_row(conn: psycopg.Connection[Any], project_id: UUID | str) -> Row | None:
    row = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM projects WHERE id = %s", (str(project_id),)
    ).fetchone()
    return None if row is None else jsonable_row(row)


def project_snapshot(conn: psycopg.Connection[Any], project_id: str) -> dict[str, Any]:
    """The `project:<id>` topic's snapshot: the project, its gallery and its shots."""
    return {
        "project": project_row(conn, project_id),
        "generations": all_generations(conn, project_id),
        "shots": shots_of_project(conn, project_id),
    }

"""Resources: one row per LoRA of a user (deleted ones kept and flagged), listed newest
first in keyset pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.resource import Resource
from projections.engine.writes import Op, split
from projections.views.base import Context, Row, View, handles, iso, jsonable_row
from projections.views.gallery import PAGE_MAX, decode_cursor, encode_cursor

if TYPE_CHECKING:
    import psycopg

COLUMNS = (
    "id",
    "owner_id",
    "type",
    "name",
    "location",
    "url",
    "size",
    "sha256",
    "metadata",
    "deleted",
    "created_at",
    "log_position",
)
JSON_COLUMNS = frozenset({"metadata"})


def render(r: Resource, position: int) -> Row:
    return {
        "id": str(r.id),
        "owner_id": r.owner_id,
        "type": r.kind,
        "name": r.name,
        "location": r.location,
        "url": r.url,
        "size": r.size,
        "sha256": r.sha256,
        "metadata": r.metadata,
        "deleted": r.deleted,
        "created_at": iso(r.created_at),
        "log_position": position,
    }


class ResourcesView(View):
    name = "resources"
    tables = ("resources",)

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[UUID, Row] = {}

    def ddl(self, names: dict[str, str]) -> list[str]:
        t = names["resources"]
        return [
            f"""CREATE TABLE IF NOT EXISTS "{t}" (
                id uuid PRIMARY KEY, owner_id text NOT NULL, type text NOT NULL,
                name text NOT NULL, location text, url text, size bigint, sha256 text,
                metadata jsonb NOT NULL, deleted boolean NOT NULL,
                created_at timestamptz NOT NULL, log_position bigint NOT NULL)""",
            f'CREATE INDEX IF NOT EXISTS "{t}_owner" ON "{t}" (owner_id, created_at DESC, id '
            "DESC) WHERE NOT deleted",
        ]

    @handles(Resource.Created, Resource.Deleted)
    def on_resource(self, event: Any, r: Resource, _: Any, ctx: Context) -> None:
        self.pending[r.id] = render(r, ctx.position)
        if isinstance(event, Resource.Created):
            self.new.add(r.id)

    def refresh(self, event: Any, ctx: Context) -> None:
        r = ctx.aggregates.current(event.originator_id)
        if isinstance(r, Resource):
            self.on_resource(event, r, None, ctx)

    def take(self) -> list[Op]:
        pending, new, self.pending, self.new = self.pending, self.new, {}, set()
        return split("resources", COLUMNS, ("id",), pending, new, JSON_COLUMNS)

    def has_pending(self) -> bool:
        return bool(self.pending)


def resources_page(
    conn: psycopg.Connection[Any], owner_id: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """A user's live resources, newest first: `{"items": [row…], "next_cursor"}`; pass
    `next_cursor` back as `cursor` for the next page."""
    limit = max(1, min(int(limit), PAGE_MAX))
    where = ["owner_id = %(owner)s", "NOT deleted"]
    params: dict[str, Any] = {"owner": owner_id, "limit": limit + 1}
    if cursor:
        created_at, ident = decode_cursor(cursor)
        where.append("(created_at, id) < (%(c_at)s::timestamptz, %(c_id)s::uuid)")
        params.update(c_at=created_at, c_id=ident)
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM resources WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        params,
    ).fetchall()
    items = [jsonable_row(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": encode_cursor(items[-1]) if len(rows) > limit else None}


def resource_row(conn: psycopg.Connection[Any], resource_id: UUID | str) -> Row | None:
    row = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM resources WHERE id = %s", (str(resource_id),)
    ).fetchone()
    return None if row is None else jsonable_row(row)

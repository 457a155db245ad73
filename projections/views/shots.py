"""Shots of a project in position order, each with its ordered members and media.

A member carries its generation's primary location and thumbnail, so a
primary change of a generation re-renders every shot that holds it (the view
keeps `generation → shots` from its own `generation_ids` column).

A deleted generation leaves its shots (seed: its membership rows go with it):
its members are not listed and not counted, and come back when it is restored.
The memberships stay in the `Shot` aggregate, and `generation_ids` keeps every
member's generation, deleted or not, so a restore finds the shots again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.generation import Generation
from domain.shot import Shot
from projections.engine.writes import Op, split
from projections.views.base import (
    LRU,
    Context,
    Row,
    View,
    captures,
    handles,
    iso,
    jsonable_row,
    memo,
)

if TYPE_CHECKING:
    import psycopg

    from projections.engine.aggregates import AggregateCache

COLUMNS = (
    "id",
    "project_id",
    "name",
    "position",
    "aspect_ratio",
    "settings",
    "members",
    "generation_ids",
    "member_count",
    "unpositioned_count",
    "deleted",
    "created_at",
    "updated_at",
    "log_position",
)
JSON_COLUMNS = frozenset({"settings", "members"})
SHOT_EVENTS = (
    Shot.Created,
    Shot.Updated,
    Shot.MemberAdded,
    Shot.MemberRemoved,
    Shot.FramesSet,
    Shot.Placed,
    Shot.Deleted,
    Shot.Restored,
)
MEDIA_EVENTS = (
    Generation.VariantAdded,
    Generation.PrimaryChanged,
    Generation.VariantDeleted,
    Generation.Deleted,
    Generation.Restored,
)


def _member_constants(m: Any) -> tuple[str, str]:
    return (str(m.id), str(m.generation_id))


def render(shot: Shot, aggregates: AggregateCache, position: int) -> Row:
    members = []
    rank = unpositioned = 0
    for m in shot.ordered_members():
        g = aggregates.current(m.generation_id)
        if isinstance(g, Generation) and g.deleted:
            continue
        if m.timeline_frame is None and not m.is_video:
            unpositioned += 1
        primary = g.primary if isinstance(g, Generation) else None
        member_id, generation_id = memo(m, _member_constants)
        members.append(
            {
                "shot_generation_id": member_id,
                "generation_id": generation_id,
                "timeline_frame": m.timeline_frame,
                "position": None if m.timeline_frame is None else rank,
                "location": primary.location if primary else None,
                "thumbnail_url": primary.thumbnail_url if primary else None,
                "type": m.media_type,
            }
        )
        if m.timeline_frame is not None:
            rank += 1
    return {
        "id": str(shot.id),
        "project_id": str(shot.project_id),
        "name": shot.name,
        "position": shot.position,
        "aspect_ratio": shot.aspect_ratio,
        "settings": shot.settings,
        "members": members,
        "generation_ids": sorted({memo(m, _member_constants)[1] for m in shot.members}),
        "member_count": len(members),
        "unpositioned_count": unpositioned,
        "deleted": shot.deleted,
        "created_at": iso(shot.created_on),
        "updated_at": iso(shot.modified_on),
        "log_position": position,
    }


class ShotsView(View):
    name = "shots"
    tables = ("shots",)

    def __init__(self, capacity: int = 200_000) -> None:
        super().__init__()
        self.shots_of: LRU[UUID, set[UUID]] = LRU(capacity)
        self.pending: dict[UUID, Row] = {}

    def ddl(self, names: dict[str, str]) -> list[str]:
        t = names["shots"]
        return [
            f"""CREATE TABLE IF NOT EXISTS "{t}" (
                id uuid PRIMARY KEY, project_id uuid NOT NULL, name text NOT NULL,
                position int NOT NULL, aspect_ratio text, settings jsonb NOT NULL,
                members jsonb NOT NULL, generation_ids uuid[] NOT NULL,
                member_count int NOT NULL, unpositioned_count int NOT NULL,
                deleted boolean NOT NULL, created_at timestamptz, updated_at timestamptz,
                log_position bigint NOT NULL)""",
            f'CREATE INDEX IF NOT EXISTS "{t}_project" ON "{t}" (project_id, position) '
            "WHERE NOT deleted",
            f'CREATE INDEX IF NOT EXISTS "{t}_generations" ON "{t}" USING gin (generation_ids)',
        ]

    def _index(self, generation_id: UUID) -> set[UUID]:
        found = self.shots_of.get(generation_id)
        if found is None:
            rows = self.query(
                'SELECT id FROM "{shots}" WHERE generation_ids @> ARRAY[%s]::uuid[]',
                (generation_id,),
            )
            found = {r["id"] for r in rows}
            self.shots_of[generation_id] = found
        return found

    def _emit(self, shot: Shot, ctx: Context, *, removed: bool = False) -> None:
        row = render(shot, ctx.aggregates, ctx.position)
        self.pending[shot.id] = row
        if shot.deleted:
            if removed:
                gone = {"id": row["id"], "project_id": row["project_id"]}
                ctx.emit(f"shot:{shot.id}", "shot.removed", gone)
                ctx.emit(f"project:{shot.project_id}", "shot.removed", gone)
            return
        ctx.emit(f"shot:{shot.id}", "shot.upserted", row)
        ctx.emit(f"project:{shot.project_id}", "shot.upserted", row)

    @captures(Shot.MemberRemoved)
    def removed_generation(self, event: Shot.MemberRemoved, before: Shot) -> UUID | None:
        return next((m.generation_id for m in before.members if m.id == event.membership_id), None)

    @handles(*SHOT_EVENTS)
    def on_shot(self, event: Any, shot: Shot, removed: Any, ctx: Context) -> None:
        if isinstance(event, Shot.Created):
            self.new.add(shot.id)
        elif isinstance(event, Shot.MemberAdded):
            self._index(event.generation_id).add(shot.id)
        elif (
            isinstance(event, Shot.MemberRemoved)
            and removed is not None
            and all(m.generation_id != removed for m in shot.members)
        ):
            self._index(removed).discard(shot.id)
        self._emit(shot, ctx, removed=isinstance(event, Shot.Deleted))

    @handles(Generation.Created)
    def on_generation_created(self, event: Any, g: Generation, _: Any, ctx: Context) -> None:
        self.shots_of[g.id] = set()

    @handles(*MEDIA_EVENTS)
    def on_media(self, event: Any, g: Generation, _: Any, ctx: Context) -> None:
        holding = self._index(g.id)
        if not holding:
            return  # most generations are in no shot
        for shot_id in sorted(holding):
            shot = ctx.aggregates.current(shot_id)
            if isinstance(shot, Shot):
                self._emit(shot, ctx)

    def refresh(self, event: Any, ctx: Context) -> None:
        aggregate = ctx.aggregates.current(event.originator_id)
        if isinstance(aggregate, Shot):
            for m in aggregate.members:
                self._index(m.generation_id).add(aggregate.id)
            self._emit(aggregate, ctx)
        elif isinstance(aggregate, Generation):
            self.on_media(event, aggregate, None, ctx)

    def take(self) -> list[Op]:
        pending, new, self.pending, self.new = self.pending, self.new, {}, set()
        return split("shots", COLUMNS, ("id",), pending, new, JSON_COLUMNS)

    def flushed(self) -> None:
        self.shots_of.trim()

    def has_pending(self) -> bool:
        return bool(self.pending)


def shots_of_project(conn: psycopg.Connection[Any], project_id: UUID | str) -> list[Row]:
    """A project's live shots in position order, each with ordered `members`."""
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM shots WHERE project_id = %s AND NOT deleted "
        "ORDER BY position, created_at",
        (str(project_id),),
    ).fetchall()
    return [jsonable_row(r) for r in rows]


def shot_row(conn: psycopg.Connection[Any], shot_id: UUID | str) -> Row | None:
    """One shot (deleted ones too: check `deleted`), or None."""
    row = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM shots WHERE id = %s", (str(shot_id),)
    ).fetchone()
    return None if row is None else jsonable_row(row)


def shot_snapshot(conn: psycopg.Connection[Any], shot_id: str) -> dict[str, Any]:
    """The `shot:<id>` topic's snapshot."""
    return {"shot": shot_row(conn, shot_id)}

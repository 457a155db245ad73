"""The gallery: one row per generation with its primary variant's media and shot data.

Rows are rendered from the `Generation` aggregate (primary variant fields,
variant count, starred, lineage) plus `shot_data`, the denormalised
`{shot_id: [frames…]}` of seed 002 (frames sorted, nulls last; deleted shots
left out), maintained from `Shot` events. Children of composite videos and
deleted generations stay in the table but the gallery queries hide them.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg.types.json import Jsonb

from domain.generation import Generation
from domain.shot import Shot
from projections.engine.writes import Op, split
from projections.errors import InvalidCursorError
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
    sid,
)

if TYPE_CHECKING:
    import psycopg

COLUMNS = (
    "id",
    "project_id",
    "media_type",
    "name",
    "location",
    "thumbnail_url",
    "params",
    "primary_variant_id",
    "variant_type",
    "variant_count",
    "starred",
    "based_on",
    "parent_generation_id",
    "is_child",
    "child_order",
    "tool_type",
    "shot_data",
    "created_at",
    "updated_at",
    "deleted",
    "log_position",
)
JSON_COLUMNS = frozenset({"params", "shot_data"})
VISIBLE = "NOT is_child AND NOT deleted"
PAGE_MAX = 200

GENERATION_EVENTS = (
    Generation.Created,
    Generation.VariantAdded,
    Generation.PrimaryChanged,
    Generation.VariantDeleted,
    Generation.Starred,
    Generation.Renamed,
    Generation.Deleted,
    Generation.Restored,
    Generation.VariantEdited,
)
SHOT_EVENTS = (Shot.MemberAdded, Shot.MemberRemoved, Shot.FramesSet, Shot.Deleted, Shot.Restored)


def frames_key(frame: int | None) -> tuple[bool, int]:
    return (frame is None, frame or 0)


def shot_frames(shot: Shot) -> dict[UUID, list[int | None]]:
    """Each generation's frames in this shot, sorted with nulls last."""
    found: dict[UUID, list[int | None]] = {}
    for member in shot.members:
        found.setdefault(member.generation_id, []).append(member.timeline_frame)
    for frames in found.values():
        frames.sort(key=frames_key)
    return found


def constants(g: Generation) -> tuple[Any, ...]:
    ident, project = str(g.id), str(g.project_id)
    return (
        ident,
        project,
        g.created_at.isoformat(),
        sid(g.based_on),
        sid(g.parent_generation_id),
        _tool_type(g),
        f"generation:{ident}",
        f"project:{project}",
    )


def variant_constants(v: Any) -> tuple[str, str, str | None]:
    return (str(v.id), v.created_at.isoformat(), sid(v.source_task_id))


def variant_id(v: Any) -> str:
    ident: str = memo(v, variant_constants)[0]
    return ident


def render(g: Generation, shot_data: dict[str, list[int | None]], position: int) -> Row:
    primary = g.primary
    ident, project, created, based_on, parent, tool, _, _ = memo(g, constants)
    return {
        "id": ident,
        "project_id": project,
        "media_type": g.media_type,
        "name": g.display_name,
        "location": primary.location if primary else None,
        "thumbnail_url": primary.thumbnail_url if primary else None,
        "params": g.display_params,
        "primary_variant_id": variant_id(primary) if primary else None,
        "variant_type": primary.variant_type if primary else None,
        "variant_count": len(g.variants),
        "starred": g.starred,
        "based_on": based_on,
        "parent_generation_id": parent,
        "is_child": parent is not None,
        "child_order": g.child_order,
        "tool_type": tool,
        "shot_data": shot_data,
        "created_at": created,
        "updated_at": iso(g.modified_on),
        "deleted": g.deleted,
        "log_position": position,
    }


def _tool_type(g: Generation) -> str | None:
    value = g.params.get("tool_type") if isinstance(g.params, dict) else None
    return None if value is None else str(value)


class GalleryView(View):
    name = "gallery"
    tables = ("gallery",)

    def __init__(self, capacity: int = 200_000) -> None:
        super().__init__()
        self.shot_data: LRU[UUID, dict[str, list[int | None]]] = LRU(capacity)
        self.pending: dict[UUID, Row] = {}

    def ddl(self, names: dict[str, str]) -> list[str]:
        t = names["gallery"]
        return [
            f"""CREATE TABLE IF NOT EXISTS "{t}" (
                id uuid PRIMARY KEY, project_id uuid NOT NULL, media_type text NOT NULL,
                name text, location text, thumbnail_url text, params jsonb NOT NULL,
                primary_variant_id uuid, variant_type text, variant_count int NOT NULL,
                starred boolean NOT NULL, based_on uuid, parent_generation_id uuid,
                is_child boolean NOT NULL, child_order int, tool_type text,
                shot_data jsonb NOT NULL, created_at timestamptz NOT NULL,
                updated_at timestamptz, deleted boolean NOT NULL, log_position bigint NOT NULL)""",
            f'CREATE INDEX IF NOT EXISTS "{t}_newest" ON "{t}" '
            f"(project_id, created_at DESC, id DESC) WHERE {VISIBLE}",
            # Seed 002's (project_id, starred, created_at). Type, tool type and
            # "in no shot" are dense filters: walking the newest-first index and
            # skipping rows is cheaper than three more indexes on every write.
            f'CREATE INDEX IF NOT EXISTS "{t}_starred" ON "{t}" '
            f"(project_id, starred, created_at DESC, id DESC) WHERE {VISIBLE}",
            # jsonb_ops, not jsonb_path_ops: "in shot S" is a key-existence test
            # (`shot_data ? S`), which path_ops cannot answer from the index.
            f'CREATE INDEX IF NOT EXISTS "{t}_shots" ON "{t}" USING gin (shot_data)',
            # The bin (`deleted=true` listings): few rows, its own small index.
            f'CREATE INDEX IF NOT EXISTS "{t}_deleted" ON "{t}" '
            f"(project_id, created_at DESC, id DESC) WHERE deleted AND NOT is_child",
            f'CREATE INDEX IF NOT EXISTS "{t}_based_on" ON "{t}" (based_on) '
            f"WHERE based_on IS NOT NULL",
            f'CREATE INDEX IF NOT EXISTS "{t}_parent" ON "{t}" '
            f"(parent_generation_id, child_order) WHERE parent_generation_id IS NOT NULL",
        ]

    # -- state -----------------------------------------------------------
    def _shots_of(self, generation_id: UUID) -> dict[str, list[int | None]]:
        found = self.shot_data.get(generation_id)
        if found is None:
            rows = self.query('SELECT shot_data FROM "{gallery}" WHERE id = %s', (generation_id,))
            found = rows[0]["shot_data"] if rows else {}
            self.shot_data[generation_id] = found
        return found

    def _emit(self, g: Generation, ctx: Context, *, removed: bool = False) -> None:
        row = render(g, self._shots_of(g.id), ctx.position)
        self.pending[g.id] = row
        *_, topic, project = memo(g, constants)
        ctx.emit(topic, "generation.upserted", row)
        if g.parent_generation_id is not None:
            return
        if g.deleted:
            if removed:
                ctx.emit(
                    project,
                    "generation.removed",
                    {"id": row["id"], "project_id": row["project_id"]},
                )
        else:
            ctx.emit(project, "generation.upserted", row)

    # -- generation events -----------------------------------------------
    @handles(*GENERATION_EVENTS)
    def on_generation(self, event: Any, g: Generation, _: Any, ctx: Context) -> None:
        if isinstance(event, Generation.Created):
            self.shot_data[g.id] = {}
            self.new.add(g.id)
        self._emit(g, ctx, removed=isinstance(event, Generation.Deleted))

    # -- shot events -----------------------------------------------------
    @captures(Shot.MemberRemoved)
    def removed_generation(self, event: Shot.MemberRemoved, before: Shot) -> UUID | None:
        return next((m.generation_id for m in before.members if m.id == event.membership_id), None)

    @handles(*SHOT_EVENTS)
    def on_shot(self, event: Any, shot: Shot, removed: UUID | None, ctx: Context) -> None:
        frames = shot_frames(shot)
        if isinstance(event, Shot.MemberAdded):
            touched: set[UUID] = {event.generation_id}
        elif isinstance(event, Shot.MemberRemoved):
            touched = {removed} if removed else set()
        elif isinstance(event, Shot.FramesSet):
            changed = set(event.frames)
            touched = {m.generation_id for m in shot.members if str(m.id) in changed}
        else:
            touched = set(frames)
        key = str(shot.id)
        for generation_id in touched:
            self._set_frames(
                generation_id, key, None if shot.deleted else frames.get(generation_id), ctx
            )

    def _set_frames(
        self, generation_id: UUID, shot_key: str, frames: list[int | None] | None, ctx: Context
    ) -> None:
        current = self._shots_of(generation_id)
        if current.get(shot_key) == frames:
            return
        updated = {k: v for k, v in current.items() if k != shot_key}
        if frames:
            updated[shot_key] = frames
        self.shot_data[generation_id] = updated
        g = ctx.aggregates.current(generation_id)
        if isinstance(g, Generation):
            self._emit(g, ctx)

    def refresh(self, event: Any, ctx: Context) -> None:
        aggregate = ctx.aggregates.current(event.originator_id)
        if isinstance(aggregate, Shot):
            for generation_id, frames in shot_frames(aggregate).items():
                self._set_frames(
                    generation_id, str(aggregate.id), None if aggregate.deleted else frames, ctx
                )
        elif isinstance(aggregate, Generation):
            self._emit(aggregate, ctx)

    # -- writes ----------------------------------------------------------
    def take(self) -> list[Op]:
        pending, new, self.pending, self.new = self.pending, self.new, {}, set()
        return split("gallery", COLUMNS, ("id",), pending, new, JSON_COLUMNS)

    def flushed(self) -> None:
        self.shot_data.trim()

    def has_pending(self) -> bool:
        return bool(self.pending)


# -- queries -------------------------------------------------------------------


def encode_cursor(row: Row) -> str:
    raw = json.dumps([row["created_at"], row["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created_at, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        UUID(ident)
        return str(created_at), str(ident)
    except (ValueError, TypeError) as error:
        raise InvalidCursorError(f"not a gallery cursor: {cursor!r}") from error


def gallery_page(
    conn: psycopg.Connection[Any],
    project_id: UUID | str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    starred: bool | None = None,
    media_type: str | None = None,
    tool_type: str | None = None,
    in_shot: UUID | str | None = None,
    in_no_shot: bool = False,
    unpositioned_in_shot: UUID | str | None = None,
    deleted: bool = False,
) -> dict[str, Any]:
    """One page of a project's gallery, newest first (created_at desc, id desc).

    Children and deleted generations are hidden; with `deleted`, only the deleted
    (top-level) generations are listed, for a restore. Returns `{"items": [row…],
    "next_cursor": str | None}`; pass `next_cursor` back as `cursor` for the
    next page (keyset: stable while new generations arrive).
    """
    limit = max(1, min(int(limit), PAGE_MAX))
    where = ["project_id = %(project)s", "NOT is_child", "deleted" if deleted else "NOT deleted"]
    params: dict[str, Any] = {"project": str(project_id), "limit": limit + 1}
    if starred is not None:
        where.append("starred" if starred else "NOT starred")
    if media_type is not None:
        where.append("media_type = %(media_type)s")
        params["media_type"] = media_type
    if tool_type is not None:
        where.append("tool_type = %(tool_type)s")
        params["tool_type"] = tool_type
    # A shot filter is selective: find its few rows through the GIN index first
    # (a materialised CTE), instead of walking the newest-first index and
    # testing every row of the project (the planner's default choice).
    hits = []
    if in_shot is not None:
        hits.append("shot_data ? %(in_shot)s")
        params["in_shot"] = str(in_shot)
    if unpositioned_in_shot is not None:
        hits.append("shot_data @> %(unpositioned)s")
        params["unpositioned"] = Jsonb({str(unpositioned_in_shot): [None]})
    if in_no_shot:
        where.append("shot_data = '{}'::jsonb")
    if cursor:
        created_at, ident = decode_cursor(cursor)
        where.append("(created_at, id) < (%(c_at)s::timestamptz, %(c_id)s::uuid)")
        params.update(c_at=created_at, c_id=ident)
    source = "hits" if hits else "gallery"
    cte = (
        f"WITH hits AS MATERIALIZED (SELECT * FROM gallery WHERE {' AND '.join(hits)}) "
        if hits
        else ""
    )
    rows = conn.execute(
        f"{cte}SELECT {', '.join(COLUMNS)} FROM {source} WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        params,
    ).fetchall()
    items = [jsonable_row(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": encode_cursor(items[-1]) if len(rows) > limit else None}


def generation_row(conn: psycopg.Connection[Any], generation_id: UUID | str) -> Row | None:
    """One generation's gallery row (also children and deleted ones), or None."""
    row = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM gallery WHERE id = %s", (str(generation_id),)
    ).fetchone()
    return None if row is None else jsonable_row(row)


def all_generations(conn: psycopg.Connection[Any], project_id: str) -> list[dict[str, Any]]:
    """Every visible generation of a project, newest first (the gallery in pages of 200)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = gallery_page(conn, project_id, limit=200, cursor=cursor)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items

"""Variants: every variant of every generation, and which one is primary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.generation import Generation, Variant
from projections.engine.writes import Delete, Op, Statement, split
from projections.views.base import Context, Row, View, captures, handles, jsonable_row, memo
from projections.views.gallery import constants, generation_row, variant_constants

if TYPE_CHECKING:
    import psycopg

COLUMNS = (
    "id",
    "generation_id",
    "project_id",
    "location",
    "thumbnail_url",
    "params",
    "variant_type",
    "name",
    "created_at",
    "starred",
    "viewed",
    "is_primary",
    "source_task_id",
    "log_position",
)
JSON_COLUMNS = frozenset({"params"})
CHANGING = (Generation.VariantAdded, Generation.PrimaryChanged, Generation.VariantDeleted)


def render(g: Generation, v: Variant, position: int) -> Row:
    ident, created, task = memo(v, variant_constants)
    generation, project, *_ = memo(g, constants)
    return {
        "id": ident,
        "generation_id": generation,
        "project_id": project,
        "location": v.location,
        "thumbnail_url": v.thumbnail_url,
        "params": v.params,
        "variant_type": v.variant_type,
        "name": v.name,
        "created_at": created,
        "starred": v.starred,
        "viewed": v.viewed,
        "is_primary": g.primary_variant_id == v.id,
        "source_task_id": task,
        "log_position": position,
    }


class VariantsView(View):
    name = "variants"
    tables = ("variants",)

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[UUID, Row | None] = {}
        self.replace_all: set[UUID] = set()

    def ddl(self, names: dict[str, str]) -> list[str]:
        t = names["variants"]
        return [
            f"""CREATE TABLE IF NOT EXISTS "{t}" (
                id uuid PRIMARY KEY, generation_id uuid NOT NULL, project_id uuid NOT NULL,
                location text NOT NULL, thumbnail_url text, params jsonb NOT NULL,
                variant_type text NOT NULL, name text, created_at timestamptz NOT NULL,
                starred boolean NOT NULL, viewed boolean NOT NULL, is_primary boolean NOT NULL,
                source_task_id uuid, log_position bigint NOT NULL)""",
            f'CREATE INDEX IF NOT EXISTS "{t}_generation" ON "{t}" (generation_id, created_at)',
            f'CREATE UNIQUE INDEX IF NOT EXISTS "{t}_one_primary" ON "{t}" (generation_id) '
            "WHERE is_primary",
        ]

    @captures(*CHANGING)
    def old_primary(self, _: Any, before: Generation) -> UUID | None:
        return before.primary_variant_id

    def _upsert(self, g: Generation, variant_id: UUID | None, ctx: Context) -> None:
        variant = g.variants.get(variant_id) if variant_id else None
        if variant is not None:
            row = render(g, variant, ctx.position)
            self.pending[variant.id] = row
            ctx.emit(memo(g, constants)[6], "variant.upserted", row)

    @handles(Generation.VariantAdded)
    def on_added(
        self, event: Generation.VariantAdded, g: Generation, old: UUID | None, ctx: Context
    ) -> None:
        self.new.add(event.variant_id)
        self._upsert(g, event.variant_id, ctx)
        if old != g.primary_variant_id:
            self._upsert(g, old, ctx)

    @handles(Generation.PrimaryChanged)
    def on_primary(self, event: Any, g: Generation, old: UUID | None, ctx: Context) -> None:
        self._upsert(g, old, ctx)
        self._upsert(g, g.primary_variant_id, ctx)

    @handles(Generation.VariantDeleted)
    def on_deleted(
        self, event: Generation.VariantDeleted, g: Generation, old: UUID | None, ctx: Context
    ) -> None:
        self.pending[event.variant_id] = None
        ctx.emit(
            f"generation:{g.id}",
            "variant.removed",
            {"id": str(event.variant_id), "generation_id": str(g.id)},
        )
        if event.promoted_id != old:
            self._upsert(g, event.promoted_id, ctx)

    @handles(Generation.VariantViewed, Generation.VariantEdited)
    def on_viewed(
        self,
        event: Generation.VariantViewed | Generation.VariantEdited,
        g: Generation,
        _: Any,
        ctx: Context,
    ) -> None:
        self._upsert(g, event.variant_id, ctx)

    def refresh(self, event: Any, ctx: Context) -> None:
        g = ctx.aggregates.current(event.originator_id)
        if not isinstance(g, Generation):
            return
        self.replace_all.add(g.id)
        for variant_id in g.variants:
            self._upsert(g, variant_id, ctx)

    def take(self) -> list[Op]:
        pending, new, replace_all = self.pending, self.new, self.replace_all
        self.pending, self.new, self.replace_all = {}, set(), set()
        # Deletes first, demotions before promotions: the one-primary index is
        # checked per statement. Variants created in this batch are COPYed in.
        ops: list[Op] = []
        gone = [k for k, row in pending.items() if row is None]
        if gone:
            ops.append(Delete("variants", "id", gone))
        demoted = {k: r for k, r in pending.items() if r is not None and not r["is_primary"]}
        promoted = {k: r for k, r in pending.items() if r is not None and r["is_primary"]}
        ops += split("variants", COLUMNS, ("id",), demoted, new, JSON_COLUMNS)
        ops += split("variants", COLUMNS, ("id",), promoted, new, JSON_COLUMNS)
        rows = [r for r in pending.values() if r is not None]
        for generation_id in replace_all:
            keep = [r["id"] for r in rows if r["generation_id"] == str(generation_id)]
            ops.append(
                Statement(
                    'DELETE FROM "{variants}" WHERE generation_id = %s '
                    "AND NOT (id = ANY(%s::uuid[]))",
                    (generation_id, keep),
                )
            )
        return ops

    def has_pending(self) -> bool:
        return bool(self.pending or self.replace_all)


def variants_of(conn: psycopg.Connection[Any], generation_id: UUID | str) -> list[Row]:
    """Every variant of a generation, oldest first; exactly one has `is_primary` when any exist."""
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM variants WHERE generation_id = %s "
        "ORDER BY created_at, id",
        (str(generation_id),),
    ).fetchall()
    return [jsonable_row(r) for r in rows]


def generation_snapshot(conn: psycopg.Connection[Any], generation_id: str) -> dict[str, Any]:
    """The `generation:<id>` topic's snapshot: its gallery row and its variants."""
    return {
        "generation": generation_row(conn, generation_id),
        "variants": variants_of(conn, generation_id),
    }

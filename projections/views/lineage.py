"""Lineage queries over the gallery table: a composite's children, what a generation
was made from (`based_on` chain) and what was made from it."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any
from uuid import UUID

from projections.errors import InvalidCursorError
from projections.views.base import Row, jsonable_row
from projections.views.gallery import COLUMNS, PAGE_MAX, decode_cursor, encode_cursor

if TYPE_CHECKING:
    import psycopg


def children_of(conn: psycopg.Connection[Any], generation_id: UUID | str) -> list[Row]:
    """A composite video's children in `child_order`."""
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM gallery WHERE parent_generation_id = %s "
        "AND NOT deleted ORDER BY child_order, created_at",
        (str(generation_id),),
    ).fetchall()
    return [jsonable_row(r) for r in rows]


LINEAGE_DEPTH = 50


def _encode(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def children_page(
    conn: psycopg.Connection[Any],
    generation_id: UUID | str,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A composite's live children in `child_order`, in keyset pages (the
    `_parent` index): `{"items": [row…], "next_cursor": str | None}`."""
    limit = max(1, min(int(limit), PAGE_MAX))
    where = ["parent_generation_id = %(parent)s", "NOT deleted"]
    params: dict[str, Any] = {"parent": str(generation_id), "limit": limit + 1}
    if cursor:
        try:
            order, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            params.update(c_order=int(order), c_id=str(UUID(ident)))
        except (ValueError, TypeError) as error:
            raise InvalidCursorError(f"not a children cursor: {cursor!r}") from error
        where.append("(coalesce(child_order, 0), id) > (%(c_order)s, %(c_id)s::uuid)")
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM gallery WHERE {' AND '.join(where)} "
        "ORDER BY coalesce(child_order, 0), id LIMIT %(limit)s",
        params,
    ).fetchall()
    items = [jsonable_row(r) for r in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return {
        "items": items,
        "next_cursor": None if last is None else _encode([last["child_order"] or 0, last["id"]]),
    }


def ancestors_of(
    conn: psycopg.Connection[Any], generation_id: UUID | str, *, depth: int = LINEAGE_DEPTH
) -> dict[str, Any]:
    """What a generation was made from, up its `based_on` chain, nearest first, at
    most `depth` steps, within its project. The walk stops at a source that is
    gone, deleted or in another project; `truncated` says the chain goes on past
    `depth`."""
    depth = max(1, min(int(depth), LINEAGE_DEPTH))
    rows = conn.execute(
        f"""WITH RECURSIVE chain AS (
              SELECT g.based_on AS next, g.project_id, 0 AS step
                FROM gallery g WHERE g.id = %(id)s
              UNION ALL
              SELECT a.based_on, a.project_id, c.step + 1
                FROM chain c JOIN gallery a ON a.id = c.next
               WHERE c.step < %(depth)s AND NOT a.deleted AND a.project_id = c.project_id)
            SELECT {", ".join("a." + c for c in COLUMNS)}, c.step
              FROM chain c JOIN gallery a ON a.id = c.next
             WHERE c.step < %(depth)s AND NOT a.deleted AND a.project_id = c.project_id
             ORDER BY c.step""",
        {"id": str(generation_id), "depth": depth + 1},
    ).fetchall()
    items = [jsonable_row({k: v for k, v in r.items() if k != "step"}) for r in rows]
    truncated = len(items) > depth
    return {"items": items[:depth], "truncated": truncated}


def derivatives_page(
    conn: psycopg.Connection[Any],
    generation_id: UUID | str,
    project_id: UUID | str,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """What was made from a generation (`based_on` = it, one level), live and in
    its project, newest first in keyset pages (the `_based_on` index)."""
    limit = max(1, min(int(limit), PAGE_MAX))
    where = ["based_on = %(source)s", "project_id = %(project)s", "NOT deleted"]
    params: dict[str, Any] = {
        "source": str(generation_id),
        "project": str(project_id),
        "limit": limit + 1,
    }
    if cursor:
        created_at, ident = decode_cursor(cursor)
        where.append("(created_at, id) < (%(c_at)s::timestamptz, %(c_id)s::uuid)")
        params.update(c_at=created_at, c_id=ident)
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM gallery WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        params,
    ).fetchall()
    items = [jsonable_row(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": encode_cursor(items[-1]) if len(rows) > limit else None}

"""Connections, bookkeeping tables and versioned table names of the read side.

Every view lives in versioned tables (`gallery_v1`, `gallery_v2`, …). Queries
read through a plain SQL view with the unversioned name (`gallery`) that
selects from the active version; a rebuild swaps it in one transaction.
Bookkeeping:

- `projection_registry(view, active_version, handover_*)`: which version serves;
- `projection_tracking(view, version, position)`: how far each version got,
  written in the same transaction as that version's rows (exactly once);
- `projection_dead_letters`: events a view's handler raised on.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

META_DDL = (
    """CREATE TABLE IF NOT EXISTS projection_registry (
        view text PRIMARY KEY,
        active_version int NOT NULL,
        handover_version int,
        handover_state text,
        frozen_at bigint,
        updated_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS projection_tracking (
        view text NOT NULL,
        version int NOT NULL,
        position bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (view, version))""",
    """CREATE TABLE IF NOT EXISTS projection_dead_letters (
        view text NOT NULL,
        position bigint NOT NULL,
        topic text NOT NULL,
        originator_id uuid,
        originator_version int,
        error text NOT NULL,
        traceback text NOT NULL,
        attempts int NOT NULL DEFAULT 1,
        retry_requested boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (view, position))""",
)

NOTIFY_CHANNEL = "darkroom_changes"


def connect(
    conninfo: str, schema: str, *, autocommit: bool = True, **kwargs: Any
) -> psycopg.Connection[dict[str, Any]]:
    """A connection whose `search_path` is the schema holding events and views."""
    return psycopg.connect(
        conninfo,
        autocommit=autocommit,
        row_factory=dict_row,
        options=f"-c search_path={schema}",
        **kwargs,
    )


def pool_kwargs(schema: str) -> dict[str, Any]:
    """`kwargs=` for a psycopg_pool.ConnectionPool whose connections query the views."""
    return {"options": f"-c search_path={schema}", "row_factory": dict_row, "autocommit": True}


def versioned(base: str, version: int) -> str:
    return f"{base}_v{version}"


def names_for(bases: Sequence[str], version: int) -> dict[str, str]:
    """Base table name → versioned table name."""
    return {base: versioned(base, version) for base in bases}


def lock_key(name: str, schema: str = "") -> int:
    """A stable 63-bit advisory-lock key for a name within a schema.

    Advisory locks are per database, not per schema: the schema is part of the key.
    """
    hi = zlib.crc32(f"darkroom-projections:{schema}:{name}".encode())
    lo = zlib.crc32(f"{schema}/{name}".encode())
    return ((hi << 31) ^ lo) & 0x7FFF_FFFF_FFFF_FFFF


def ensure_meta(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("ddl", _schema_of(conn)),))
        for statement in META_DDL:
            conn.execute(statement)


def _schema_of(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_schema() AS s").fetchone()
    return str((row["s"] if isinstance(row, dict) else row[0]) if row else "")


def execute_all(conn: psycopg.Connection[Any], statements: Iterable[str]) -> None:
    for statement in statements:
        conn.execute(statement)


def point_views(conn: psycopg.Connection[Any], bases: Sequence[str], version: int) -> None:
    """(Re)create the unversioned SQL views over `version`'s tables."""
    for base in bases:
        create = sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT * FROM {}").format(
            sql.Identifier(base), sql.Identifier(versioned(base, version))
        )
        try:
            # Replacing in place keeps concurrent readers going; a changed
            # column list needs a drop (readers wait for the commit).
            with conn.transaction():
                conn.execute(create)
        except psycopg.errors.InvalidTableDefinition:
            conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(base)))
            conn.execute(create)


def drop_tables(conn: psycopg.Connection[Any], bases: Sequence[str], version: int) -> None:
    for base in bases:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                sql.Identifier(versioned(base, version))
            )
        )


def registry(conn: psycopg.Connection[Any], views: Sequence[str]) -> dict[str, dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    cur.execute("SELECT * FROM projection_registry WHERE view = ANY(%s)", (list(views),))
    return {row["view"]: row for row in cur.fetchall()}


def tracked_position(conn: psycopg.Connection[Any], view: str, version: int) -> int:
    row = conn.execute(
        "SELECT position FROM projection_tracking WHERE view = %s AND version = %s", (view, version)
    ).fetchone()
    if row is None:
        return 0
    return int(row["position"] if isinstance(row, dict) else row[0])


def active_positions(
    conn: psycopg.Connection[Any], views: Sequence[str] | None = None
) -> dict[str, int]:
    """Position of the serving version of each view (all views when `views` is None)."""
    cur = conn.cursor(row_factory=dict_row)
    cur.execute(
        "SELECT r.view, COALESCE(t.position, 0) AS position FROM projection_registry r "
        "LEFT JOIN projection_tracking t ON t.view = r.view AND t.version = r.active_version "
        "WHERE %s::text[] IS NULL OR r.view = ANY(%s)",
        (None if views is None else list(views), None if views is None else list(views)),
    )
    return {row["view"]: int(row["position"]) for row in cur.fetchall()}

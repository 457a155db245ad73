"""Creating what a runner needs: bookkeeping tables, registry rows, view tables, SQL views."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from projections import changelog, db

if TYPE_CHECKING:
    import psycopg

    from projections.views.base import View


def prepare(
    conn: psycopg.Connection[Any], views: Sequence[View], *, managed: bool, versions: dict[str, int]
) -> None:
    """Create bookkeeping tables, each view's registry row, tables and SQL views."""
    db.ensure_meta(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (db.lock_key("ddl", db._schema_of(conn)),))
        # DDL only where something is missing: `CREATE INDEX IF NOT EXISTS` takes
        # a share lock even when the index exists, which would block (and can
        # deadlock with) a live runner's writes.
        if not _exist(conn, ["changelog", "changelog_state"]):
            for statement in changelog.DDL:
                conn.execute(statement)
        conn.execute(changelog.MIGRATE)
        for view in views:
            if managed:
                conn.execute(
                    "INSERT INTO projection_registry (view, active_version) "
                    "VALUES (%s, 1) ON CONFLICT DO NOTHING",
                    (view.name,),
                )
                version = int(db.registry(conn, [view.name])[view.name]["active_version"])
            else:
                version = versions[view.name]
            names = db.names_for(view.tables, version)
            if not _exist(conn, list(names.values())):
                db.execute_all(conn, view.ddl(names))
            conn.execute(
                "INSERT INTO projection_tracking (view, version) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (view.name, version),
            )
            if managed and not _views_exist(conn, view.tables):
                db.point_views(conn, view.tables, version)


def _exist(conn: psycopg.Connection[Any], tables: Sequence[str]) -> bool:
    row = conn.execute(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = "
        "current_schema() AND tablename = ANY(%s)",
        (list(tables),),
    ).fetchone()
    n = row["n"] if isinstance(row, dict) else row[0]  # type: ignore[index]
    return int(n) == len(tables)


def _views_exist(conn: psycopg.Connection[Any], bases: Sequence[str]) -> bool:
    row = conn.execute(
        "SELECT count(*) AS n FROM pg_views WHERE schemaname = "
        "current_schema() AND viewname = ANY(%s)",
        (list(bases),),
    ).fetchone()
    n = row["n"] if isinstance(row, dict) else row[0]  # type: ignore[index]
    return int(n) == len(bases)

"""Reading the views: wait for a position (read your own writes), consistent snapshots."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from projections import db
from projections.errors import ProjectionTimeoutError

POLL = 0.005


def wait_for_position(
    conn: psycopg.Connection[Any],
    position: int,
    timeout: float = 5.0,
    *,
    views: Sequence[str] | str | None = None,
) -> dict[str, int]:
    """Block until every view (or the named ones) has processed `position`.

    Listens on `darkroom_changes` and polls the tracking table between
    notifications; returns the views' positions. Raises `ProjectionTimeoutError`.
    `conn` must be in autocommit mode (each check sees fresh commits).
    """
    names = [views] if isinstance(views, str) else (None if views is None else list(views))
    deadline = time.monotonic() + timeout
    delay = POLL
    while True:
        try:
            positions = db.active_positions(conn, names)
        except psycopg.errors.UndefinedTable:
            positions = {}  # no runner has created the bookkeeping yet
        if names is not None:
            positions = {n: positions.get(n, 0) for n in names}
        lagging = {n: p for n, p in positions.items() if p < position}
        if positions and not lagging:
            return positions
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            view, reached = min(lagging.items(), key=lambda kv: kv[1]) if lagging else ("*", 0)
            raise ProjectionTimeoutError(view, position, reached, timeout)
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


@contextmanager
def snapshot(
    conn: psycopg.Connection[Any], views: Sequence[str] | None = None
) -> Iterator[dict[str, int]]:
    """A REPEATABLE READ transaction: yields the views' positions; queries run inside it
    see exactly the rows of those positions (rows and positions commit together).

        with snapshot(conn, ["gallery"]) as positions:
            page = gallery_page(conn, project_id)
        # stream changelog rows with position > positions["gallery"]
    """
    if not conn.autocommit:
        raise ValueError("snapshot() needs a connection in autocommit mode")
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        yield db.active_positions(conn, views)
    finally:
        conn.execute("ROLLBACK")


def listen(conn: psycopg.Connection[Any]) -> None:
    """Subscribe `conn` to `NOTIFY darkroom_changes, '<position>'` (one per batch)."""
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(db.NOTIFY_CHANNEL)))

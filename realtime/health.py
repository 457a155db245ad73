"""`GET /health/live` and `GET /health/ready`, and the database read both they and
`/metrics` rely on.

- live: the process answers (its event loop runs). 200 `{"status": "live"}`.
- ready: the database answers within its timeouts, and the views this process serves
  from are within `ready_max_lag` events of the log's head (`DARKROOM_READY_MAX_LAG`;
  negative: not checked). 200 `{"status": "ready", ...}`, else 503 with a `reason`:
  `database_unreachable`, `views_missing` (no view registered yet: the projections
  have not prepared their tables) or `views_behind` (which views, by how much).

The positions are read from PostgreSQL, never from a runner in this process, so the
answer is the same whichever process runs the projections. `GET /health` is unchanged
(`realtime.app.health`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from starlette.concurrency import run_in_threadpool

from realtime.api.base import Json

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

CONNECT_TIMEOUT_S = 2  # libpq's smallest
STATEMENT_TIMEOUT_MS = 1500


@dataclass(frozen=True)
class StateSource:
    """Where the state lives: a server, a schema, the event store's table in it."""

    conninfo: str
    schema: str
    events_table: str = "stored_events"


@dataclass(frozen=True)
class DatabaseState:
    """One read of the log's head, the views' positions and (optionally) task counts."""

    head: int
    positions: dict[str, int]
    tasks: dict[str, int] = field(default_factory=dict)

    def behind(self, max_lag: int) -> dict[str, int]:
        """The views more than `max_lag` events behind the head, with their lag."""
        return {
            view: self.head - reached
            for view, reached in sorted(self.positions.items())
            if self.head - reached > max_lag
        }


def state_source(app: Starlette) -> StateSource:
    config = app.state.config
    recorder = getattr(app.state.studio, "recorder", None)
    table = getattr(recorder, "events_table_name", None)
    return StateSource(
        config.conninfo, config.schema, table if isinstance(table, str) else "stored_events"
    )


def read_state(source: StateSource, *, tasks: bool = False) -> DatabaseState:
    """Blocking; raises `psycopg.Error` when the database does not answer in time. A view
    table that does not exist yet reads as no positions (or no tasks)."""
    options = f"-c search_path={source.schema} -c statement_timeout={STATEMENT_TIMEOUT_MS}"
    with psycopg.connect(
        source.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, options=options
    ) as conn:
        head = conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
                sql.Identifier(source.events_table)
            )
        ).fetchone()
        positions = _rows(
            conn,
            "SELECT r.view, coalesce(t.position, 0) FROM "
            "projection_registry r LEFT JOIN projection_tracking t "
            "ON t.view = r.view AND t.version = r.active_version",
        )
        # A full count: on a board too big to count within the statement timeout the
        # scrape leaves `darkroom_tasks` out rather than fail as a whole.
        counts = (
            _rows(
                conn,
                "SELECT status, count(*) FROM tasks GROUP BY status",
                psycopg.errors.QueryCanceled,
            )
            if tasks
            else {}
        )
    return DatabaseState(int(head[0]) if head else 0, positions, counts)


def _rows(
    conn: psycopg.Connection[Any], query: str, *tolerated: type[psycopg.Error]
) -> dict[str, int]:
    caught: tuple[type[psycopg.Error], ...] = (psycopg.errors.UndefinedTable, *tolerated)
    try:
        return {str(key): int(value) for key, value in conn.execute(query).fetchall()}
    except caught:
        return {}


async def live(request: Request) -> Response:
    return Json({"status": "live"})


async def ready(request: Request) -> Response:
    config = request.app.state.config
    # A process answering neither the API nor `/ws` (projections, dispatcher) serves no
    # reads: only the database is checked.
    serves_views = (
        getattr(config, "serve_api", True) or getattr(request.app.state, "hub", None) is not None
    )
    max_lag = int(config.ready_max_lag) if serves_views else -1
    try:
        state = await run_in_threadpool(read_state, state_source(request.app))
    except psycopg.Error as error:
        return Json(
            {
                "status": "not_ready",
                "reason": "database_unreachable",
                "message": f"the database did not answer: {type(error).__name__}",
            },
            503,
        )
    body: dict[str, Any] = {"head_position": state.head, "max_lag": max_lag}
    if max_lag >= 0 and not state.positions:
        return Json(
            {
                "status": "not_ready",
                "reason": "views_missing",
                **body,
                "message": "no view is registered yet",
            },
            503,
        )
    behind = state.behind(max_lag) if max_lag >= 0 else {}
    if behind:
        return Json(
            {
                "status": "not_ready",
                "reason": "views_behind",
                "behind": behind,
                **body,
                "message": f"{len(behind)} view(s) more than {max_lag} events behind the head",
            },
            503,
        )
    return Json({"status": "ready", **body})

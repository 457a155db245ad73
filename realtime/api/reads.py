"""The query side of the API: every GET reads the projections' views.

`Views` owns a small psycopg pool whose connections see the studio's schema;
each read first waits (`?min_position=N`) until the views it reads have
reached N, then runs the projections' query functions off the event loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from realtime.errors import ViewTimeoutError

if TYPE_CHECKING:
    from realtime.api.base import Call
    from realtime.config import EdgeConfig

Row = dict[str, Any]


class Views:
    """A pool of view-reading connections, opened and closed with the app."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.pool: ConnectionPool[Any] | None = None

    async def __aenter__(self) -> Views:
        from projections.db import pool_kwargs

        self.pool = ConnectionPool(self.config.conninfo, min_size=1,
                                   max_size=self.config.view_pool_size,
                                   kwargs=pool_kwargs(self.config.schema), open=False)
        await run_in_threadpool(self.pool.open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.pool is not None:
            await run_in_threadpool(self.pool.close)

    def run(self, views: tuple[str, ...], min_position: int | None, fn: Any,
            *args: Any) -> Any:
        """`fn(conn, *args)` once `views` have reached `min_position` (blocking)."""
        if self.pool is None:
            raise RuntimeError("views used outside the app's lifespan")
        with self.pool.connection() as conn:
            if min_position:
                self._wait(conn, views, min_position)
            return fn(conn, *args)

    def _wait(self, conn: Any, views: tuple[str, ...], position: int) -> None:
        from projections.db import active_positions

        deadline = time.monotonic() + self.config.read_timeout_s
        delay = 0.002
        while True:
            reached = active_positions(conn, views)
            lowest = min((reached.get(v, 0) for v in views), default=position)
            if lowest >= position:
                return
            if time.monotonic() > deadline:
                raise ViewTimeoutError(
                    f"the views {', '.join(views)} reached position {lowest}, not {position}, "
                    f"within {self.config.read_timeout_s:g} s", reached=lowest,
                    wanted=position)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _min_position(call: Call) -> int | None:
    query = call.query
    return getattr(query, "min_position", None)


async def read(call: Call, views: tuple[str, ...], fn: Any, *args: Any,
               at_least: int | None = None) -> Any:
    position = max(_min_position(call) or 0, at_least or 0) or None
    return await run_in_threadpool(call.state.views.run, views, position, fn, *args)


# -- interim readers: aggregates, until the projections' views land ---------------
def _project_row(project: Any) -> Row:
    return {"id": project.id, "name": project.name, "aspect_ratio": project.aspect_ratio,
            "settings": project.settings, "deleted": project.deleted}


async def projects(call: Call, user_id: str, at_least: int | None = None) -> list[Row]:
    raise NotImplementedError


async def project(call: Call, project_id: UUID) -> Row:
    found = await call.run(call.studio.live_project, project_id, call.user)
    return _project_row(found)


async def shots(call: Call, project_id: UUID) -> list[Row]:
    raise NotImplementedError


async def shot(call: Call, shot_id: UUID) -> Row:
    raise NotImplementedError


async def generations(call: Call, query: Any) -> Row:
    raise NotImplementedError


async def generation(call: Call, generation_id: UUID) -> Row:
    raise NotImplementedError


async def variants(call: Call, generation_id: UUID) -> list[Row]:
    raise NotImplementedError


async def tasks(call: Call, project_id: UUID, status: str | None) -> list[Row]:
    raise NotImplementedError


async def task(call: Call, task_id: UUID) -> Row:
    raise NotImplementedError


async def credits(call: Call, user_id: str) -> Row:
    raise NotImplementedError

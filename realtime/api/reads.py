"""The query side of the API: every GET reads the projections' views.

`Views` owns a small psycopg pool whose connections see the studio's schema;
each read first waits (`?min_position=N`) until the views it reads have
reached N, then runs the projections' query functions off the event loop.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from domain.errors import (
    GenerationNotFoundError,
    ProjectNotFoundError,
    ShotNotFoundError,
    TaskNotFoundError,
)
from realtime.errors import ViewTimeoutError, invalid_field

if TYPE_CHECKING:
    from realtime.api.base import Call
    from realtime.config import EdgeConfig

Row = dict[str, Any]


class Views:
    """A pool of view-reading connections, opened and closed with the app."""

    # A position past the head of the log was never written: after this grace (a racing
    # commit) the read fails fast instead of waiting out the whole timeout.
    FUTURE_GRACE_S = 0.25

    def __init__(self, config: EdgeConfig, head: Any) -> None:
        self.config = config
        self.head = head
        self.pool: ConnectionPool[Any] | None = None
        # The lowest position each set of views was last seen at: positions only grow, so
        # a read that waits for no more than that needs no query first.
        self.reached: dict[tuple[str, ...], int] = {}

    async def __aenter__(self) -> Views:
        from projections.db import pool_kwargs

        self.pool = ConnectionPool(
            self.config.conninfo,
            min_size=1,
            max_size=self.config.view_pool_size,
            kwargs=pool_kwargs(self.config.schema),
            open=False,
        )
        await run_in_threadpool(self.pool.open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.pool is not None:
            await run_in_threadpool(self.pool.close)

    def query(self, fn: Any, *args: Any) -> Any:
        """`fn(conn, *args)` on a pooled connection (blocking)."""
        if self.pool is None:
            raise RuntimeError("views used outside the app's lifespan")
        with self.pool.connection() as conn:
            return fn(conn, *args)

    def lowest(self, views: tuple[str, ...]) -> int:
        from projections.db import active_positions

        reached = self.query(active_positions, views)
        return min((reached.get(v, 0) for v in views), default=0)

    async def wait(self, call: Call, views: tuple[str, ...], position: int) -> None:
        """Until `views` reached `position`. The waiting is on the event loop: a read that
        waits holds neither a thread nor a connection between its short checks."""
        if self.reached.get(views, 0) >= position:
            return
        started = time.monotonic()
        deadline = started + self.config.read_timeout_s
        delay = 0.002
        while (lowest := await self._lowest(call, views)) < position:
            now = time.monotonic()
            if (
                now - started > self.FUTURE_GRACE_S
                and (head := await call.run(self.head)) < position
            ):
                raise invalid_field(
                    "query.min_position",
                    f"at most the head of the log ({head})",
                    "position_not_written",
                    summary=f"min_position {position} was never written (the log's head is {head})",
                    code="position_not_written",
                )
            if now > deadline:
                raise ViewTimeoutError(
                    f"the views {', '.join(views)} reached position {lowest}, not {position}, "
                    f"within {self.config.read_timeout_s:g} s",
                    reached=lowest,
                    wanted=position,
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.01)

    async def _lowest(self, call: Call, views: tuple[str, ...]) -> int:
        lowest: int = await call.run(self.lowest, views)
        if lowest > self.reached.get(views, 0):
            self.reached[views] = lowest
        return lowest


def _min_position(call: Call) -> int | None:
    query = call.query
    return getattr(query, "min_position", None)


async def read(
    call: Call, views: tuple[str, ...], fn: Any, *args: Any, at_least: int | None = None
) -> Any:
    """`fn` on the views, once they reached `?min_position=`, `at_least` and the caller's
    own last acknowledged write (read-your-own-writes, realtime/sessions.py)."""
    session = await call.state.sessions.position(call.principal)
    position = max(_min_position(call) or 0, at_least or 0, session)
    if position:
        await call.state.views.wait(call, views, position)
    return await call.run(call.state.views.query, fn, *args)


def _owned(call: Call, project_id: Any, kind: type[Exception], ident: Any) -> None:
    """Another user's rows answer 404, exactly like ids that do not exist; so do the
    shots and generations of a deleted project (they come back with its restore)."""
    user = call.user
    project = UUID(str(project_id))
    if user is not None and call.studio.owner_of(project) != user:
        raise kind(ident)
    if call.studio.project(project).deleted:
        raise kind(ident)


async def _owned_project(call: Call, project_id: UUID) -> None:
    await call.run(call.studio.live_project, project_id, call.user)


# -- gallery, shots, variants: the projections' views ----------------------------
def _shot_out(row: Row) -> Row:
    out = {k: v for k, v in row.items() if k not in ("members", "generation_ids")}
    out["images"] = row.get("members") or []
    return out


async def shots(call: Call, project_id: UUID) -> list[Row]:
    from projections.views.shots import shots_of_project

    await _owned_project(call, project_id)
    rows = await read(call, ("shots",), shots_of_project, project_id)
    return [_shot_out(r) for r in rows]


async def shot(call: Call, shot_id: UUID) -> Row:
    from projections.views.shots import shot_row

    row = await read(call, ("shots",), shot_row, shot_id)
    if row is None or row["deleted"]:
        raise ShotNotFoundError(shot_id)
    await call.run(_owned, call, row["project_id"], ShotNotFoundError, shot_id)
    return _shot_out(row)


def _generation_out(row: Row) -> Row:
    return {**row, "type": row.get("media_type")}


async def generations(call: Call, query: Any) -> Row:
    from projections.views.gallery import gallery_page

    await _owned_project(call, query.project_id)
    page = await read(
        call,
        ("gallery",),
        partial(
            _page,
            gallery_page,
            query.project_id,
            limit=query.limit,
            cursor=query.cursor,
            starred=query.starred,
            media_type=query.type,
            in_shot=query.shot_id,
            in_no_shot=bool(query.not_in_shot),
            unpositioned_in_shot=query.unpositioned_in_shot,
            deleted=query.deleted,
            tool_type=query.tool_type,
        ),
    )
    return {
        "items": [_generation_out(r) for r in page["items"]],
        "next_cursor": page["next_cursor"],
    }


def _page(fn: Any, project_id: UUID, conn: Any, **kw: Any) -> Any:
    return fn(conn, project_id, **kw)


async def _generation_row(call: Call, generation_id: UUID) -> Row:
    from projections.views.gallery import generation_row

    row = await read(call, ("gallery",), generation_row, generation_id)
    if row is None or row["deleted"]:
        raise GenerationNotFoundError(generation_id)
    await call.run(_owned, call, row["project_id"], GenerationNotFoundError, generation_id)
    return row


async def generation(call: Call, generation_id: UUID) -> Row:
    return _generation_out(await _generation_row(call, generation_id))


async def children(call: Call, generation_id: UUID) -> Row:
    """A composite's live children in `child_order`, in keyset pages."""
    from projections.views.lineage import children_page

    await _generation_row(call, generation_id)
    page = await read(
        call,
        ("gallery",),
        partial(
            _page, children_page, generation_id, limit=call.query.limit, cursor=call.query.cursor
        ),
    )
    return {
        "items": [_generation_out(r) for r in page["items"]],
        "next_cursor": page["next_cursor"],
    }


def _lineage(conn: Any, row: Row, depth: int, limit: int, cursor: str | None) -> Row:
    from projections.views.lineage import ancestors_of, derivatives_page

    up = ancestors_of(conn, row["id"], depth=depth)
    down = derivatives_page(conn, row["id"], row["project_id"], limit=limit, cursor=cursor)
    return {
        "generation_id": row["id"],
        "ancestors": [_generation_out(r) for r in up["items"]],
        "ancestors_truncated": up["truncated"],
        "derivatives": [_generation_out(r) for r in down["items"]],
        "next_cursor": down["next_cursor"],
    }


async def lineage(call: Call, generation_id: UUID) -> Row:
    """Ancestors by `based_on` (bounded) and derivatives (one level, paged), from the
    gallery view, within the generation's project."""
    row = await _generation_row(call, generation_id)
    query = call.query
    return await call.run(
        call.state.views.query,  # type: ignore[no-any-return]
        _lineage,
        row,
        query.depth,
        query.limit,
        query.cursor,
    )


async def variants(call: Call, generation_id: UUID) -> list[Row]:
    from projections.views.variants import variants_of

    await _generation_row(call, generation_id)
    return await read(call, ("variants",), variants_of, generation_id)  # type: ignore[no-any-return]


# -- projects, tasks, credits -----------------------------------------------------
async def projects(
    call: Call, user_id: str, at_least: int | None = None, *, deleted: bool = False
) -> list[Row]:
    from projections.views.projects import projects_of

    return await read(
        call,
        ("projects",),  # type: ignore[no-any-return]
        partial(projects_of, deleted=deleted),
        user_id,
        at_least=at_least,
    )


async def project(call: Call, project_id: UUID) -> Row:
    from projections.views.projects import project_row

    row = await read(call, ("projects",), project_row, project_id)
    if row is None or row["deleted"] or (call.user is not None and row["owner_id"] != call.user):
        raise ProjectNotFoundError(project_id)
    return row  # type: ignore[no-any-return]


async def tasks(call: Call, project_id: UUID, status: str | None) -> list[Row]:
    from projections.views.tasks import task_board

    await _owned_project(call, project_id)
    board = await read(
        call, ("tasks",), partial(_page, task_board, project_id, status=status, limit=1000)
    )
    return board["tasks"]  # type: ignore[no-any-return]


async def task(call: Call, task_id: UUID) -> Row:
    from projections.views.tasks import task_row

    row = await read(call, ("tasks",), task_row, task_id)
    if row is None or (call.user is not None and row["owner_id"] != call.user):
        raise TaskNotFoundError(task_id)
    return row  # type: ignore[no-any-return]


def _credits(conn: Any, user_id: str) -> Row:
    from projections.views.credits import balance_of, ledger_of

    balance = balance_of(conn, user_id)
    return {
        "user_id": user_id,
        "balance": float(balance["balance"]),
        "ledger": [
            {**e, "amount": float(e["amount"])} if "amount" in e else e
            for e in ledger_of(conn, user_id)
        ],
    }


async def credits(call: Call, user_id: str) -> Row:
    return await read(call, ("credits",), _credits, user_id)  # type: ignore[no-any-return]

"""The task board (per project) and the claim queue.

`tasks` holds one row per task. `task_claim_queue` holds exactly the Queued
tasks whose dependencies are all Complete, with what a worker filters and
orders on (run type, model, owner, age); the dispatcher's claim query reads it
and then claims through the `Task` aggregate (optimistic concurrency decides).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg.rows import tuple_row

from domain.task import COMPLETE, QUEUED, STATUSES, Task
from projections.engine.writes import Delete, Op, Upsert, split
from projections.views.base import LRU, Context, Row, View, handles, iso, jsonable_row, memo, sid

if TYPE_CHECKING:
    import psycopg

COLUMNS = (
    "id",
    "project_id",
    "owner_id",
    "task_type",
    "run_type",
    "category",
    "model_name",
    "status",
    "params_summary",
    "dependant_on",
    "orchestrator_task_id",
    "attempts",
    "worker_id",
    "error",
    "progress",
    "output_location",
    "thumbnail_url",
    "cost",
    "created_at",
    "started_at",
    "processed_at",
    "updated_at",
    "log_position",
)
JSON_COLUMNS = frozenset({"params_summary", "progress"})
QUEUE_COLUMNS = (
    "task_id",
    "project_id",
    "owner_id",
    "run_type",
    "model_name",
    "category",
    "created_at",
)
SUMMARY_KEYS = (
    "prompt",
    "resolution",
    "model_name",
    "model_type",
    "shot_id",
    "segment_index",
    "join_index",
    "child_order",
    "frame_count",
    "based_on",
    "num_frames",
    "steps",
)
TEXT_MAX = 200
EVENTS = (
    Task.Created,
    Task.Claimed,
    Task.StartReset,
    Task.ProgressReported,
    Task.Completed,
    Task.Failed,
    Task.Cancelled,
    Task.Requeued,
    Task.Released,
    Task.CostRecorded,
)


def summary(params: dict[str, Any]) -> dict[str, Any]:
    """The few params a board shows; long strings cut to 200 characters."""
    out: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, str) and len(value) > TEXT_MAX:
            value = value[: TEXT_MAX - 1] + "…"
        out[key] = value if isinstance(value, str | int | float | bool) else str(value)
    return out


def constants(t: Task) -> tuple[Any, ...]:
    """What never changes on a task, as rendered (memoised per cached aggregate)."""
    return (
        str(t.id),
        str(t.project_id),
        summary(t.params),
        [str(d) for d in t.dependant_on],
        sid(t.orchestrator_task_id),
        t.created_at.isoformat(),
        f"tasks:{t.project_id}",
    )


def render(t: Task, position: int) -> Row:
    ident, project, params, deps, orchestrator, created, _ = memo(t, constants)
    return {
        "id": ident,
        "project_id": project,
        "owner_id": t.owner_id,
        "task_type": t.task_type,
        "run_type": t.run_type,
        "category": t.category,
        "model_name": t.model_name,
        "status": t.status,
        "params_summary": params,
        "dependant_on": deps,
        "orchestrator_task_id": orchestrator,
        "attempts": t.attempts,
        "worker_id": t.worker_id,
        "error": t.error_message,
        "progress": None if t.progress is None else {"step": t.progress[0], "total": t.progress[1]},
        "output_location": t.output_location,
        "thumbnail_url": t.thumbnail_url,
        "cost": None if t.cost is None else str(t.cost),
        "created_at": created,
        "started_at": iso(t.started_at),
        "processed_at": iso(t.processed_at),
        "updated_at": iso(t.modified_on),
        "log_position": position,
    }


def queue_row(t: Task) -> Row:
    ident, project, _, _, _, created, _ = memo(t, constants)
    return {
        "task_id": ident,
        "project_id": project,
        "owner_id": t.owner_id,
        "run_type": t.run_type,
        "model_name": t.model_name,
        "category": t.category,
        "created_at": created,
    }


class TasksView(View):
    name = "tasks"
    tables = ("tasks", "task_claim_queue")

    def __init__(self, capacity: int = 200_000) -> None:
        super().__init__()
        self.status: LRU[UUID, str] = LRU(capacity)
        self.dependents: LRU[UUID, set[UUID]] = LRU(capacity)
        self.pending: dict[UUID, Row] = {}
        self.queue: dict[UUID, Row | None] = {}

    def ddl(self, names: dict[str, str]) -> list[str]:
        t, q = names["tasks"], names["task_claim_queue"]
        return [
            f"""CREATE TABLE IF NOT EXISTS "{t}" (
                id uuid PRIMARY KEY, project_id uuid NOT NULL, owner_id text NOT NULL,
                task_type text NOT NULL, run_type text NOT NULL, category text NOT NULL,
                model_name text, status text NOT NULL, params_summary jsonb NOT NULL,
                dependant_on uuid[] NOT NULL, orchestrator_task_id uuid,
                attempts int NOT NULL, worker_id text, error text, progress jsonb,
                output_location text, thumbnail_url text, cost numeric(14, 3),
                created_at timestamptz NOT NULL, started_at timestamptz,
                processed_at timestamptz, updated_at timestamptz,
                log_position bigint NOT NULL)""",
            f'CREATE INDEX IF NOT EXISTS "{t}_board" ON "{t}" '
            "(project_id, created_at DESC, id DESC)",
            f'CREATE INDEX IF NOT EXISTS "{t}_status" ON "{t}" (project_id, status)',
            f'CREATE INDEX IF NOT EXISTS "{t}_deps" ON "{t}" USING gin (dependant_on)',
            f'CREATE INDEX IF NOT EXISTS "{t}_orchestrator" ON "{t}" (orchestrator_task_id) '
            "WHERE orchestrator_task_id IS NOT NULL",
            f"""CREATE TABLE IF NOT EXISTS "{q}" (
                task_id uuid PRIMARY KEY, project_id uuid NOT NULL, owner_id text NOT NULL,
                run_type text NOT NULL, model_name text, category text NOT NULL,
                created_at timestamptz NOT NULL)""",
            f'CREATE INDEX IF NOT EXISTS "{q}_claim" ON "{q}" (run_type, created_at, task_id)',
            f'CREATE INDEX IF NOT EXISTS "{q}_model" ON "{q}" (run_type, model_name, created_at)',
        ]

    # -- state -----------------------------------------------------------
    def _status(self, task_id: UUID) -> str | None:
        found = self.status.get(task_id)
        if found is None:
            rows = self.query('SELECT status FROM "{tasks}" WHERE id = %s', (task_id,))
            if not rows:
                return None
            found = rows[0]["status"]
            self.status[task_id] = found
        return found

    def _dependents(self, task_id: UUID) -> set[UUID]:
        found = self.dependents.get(task_id)
        if found is None:
            rows = self.query(
                'SELECT id FROM "{tasks}" WHERE dependant_on @> ARRAY[%s]::uuid[]', (task_id,)
            )
            found = {r["id"] for r in rows}
            self.dependents[task_id] = found
        return found

    def _requeue_check(self, t: Task) -> None:
        ready = t.status == QUEUED and all(self._status(d) == COMPLETE for d in t.dependant_on)
        self.queue[t.id] = queue_row(t) if ready else None

    # -- events ----------------------------------------------------------
    @handles(*EVENTS)
    def on_task(self, event: Any, t: Task, _: Any, ctx: Context) -> None:
        before = self.status.get(t.id) if not isinstance(event, Task.Created) else None
        if isinstance(event, Task.Created):
            self.new.add(t.id)
            for dependency in t.dependant_on:
                self._dependents(dependency).add(t.id)
            if t.id not in self.dependents:
                self.dependents[t.id] = set()
        self.status[t.id] = t.status
        row = render(t, ctx.position)
        self.pending[t.id] = row
        ctx.emit(memo(t, constants)[6], "task.upserted", row)
        self._requeue_check(t)
        if before != t.status:
            self._dependents_changed(t.id, ctx)

    def _dependents_changed(self, task_id: UUID, ctx: Context) -> None:
        for dependent in sorted(self._dependents(task_id)):
            other = ctx.aggregates.current(dependent)
            if isinstance(other, Task):
                self._requeue_check(other)

    def refresh(self, event: Any, ctx: Context) -> None:
        t = ctx.aggregates.current(event.originator_id)
        if isinstance(t, Task):
            self.on_task(event, t, None, ctx)

    # -- writes ----------------------------------------------------------
    def take(self) -> list[Op]:
        pending, new, queue = self.pending, self.new, self.queue
        self.pending, self.new, self.queue = {}, set(), {}
        ops = split("tasks", COLUMNS, ("id",), pending, new, JSON_COLUMNS)
        gone = [k for k, v in queue.items() if v is None]
        if gone:
            ops.append(Delete("task_claim_queue", "task_id", gone))
        ready = [v for v in queue.values() if v is not None]
        if ready:
            ops.append(Upsert("task_claim_queue", QUEUE_COLUMNS, ("task_id",), ready))
        return ops

    def flushed(self) -> None:
        self.status.trim()
        self.dependents.trim()

    def has_pending(self) -> bool:
        return bool(self.pending or self.queue)


# -- queries -------------------------------------------------------------------


def task_board(
    conn: psycopg.Connection[Any],
    project_id: UUID | str,
    *,
    status: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """A project's tasks, newest first (optionally one status), and counts by status."""
    params: list[Any] = [str(project_id)]
    where = "project_id = %s"
    if status is not None:
        where += " AND status = %s"
        params.append(status)
    params.append(max(1, min(int(limit), 1000)))
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM tasks WHERE {where} "
        "ORDER BY created_at DESC, id DESC LIMIT %s",
        params,
    ).fetchall()
    return {"tasks": [jsonable_row(r) for r in rows], "counts": task_counts(conn, project_id)}


def task_counts(conn: psycopg.Connection[Any], project_id: UUID | str) -> dict[str, int]:
    """Tasks per status (every status present, zero when none)."""
    rows = conn.execute(
        "SELECT status, count(*) AS n FROM tasks WHERE project_id = %s GROUP BY status",
        (str(project_id),),
    ).fetchall()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({r["status"]: int(r["n"]) for r in rows})
    return counts


def task_row(conn: psycopg.Connection[Any], task_id: UUID | str) -> Row | None:
    row = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM tasks WHERE id = %s", (str(task_id),)
    ).fetchone()
    return None if row is None else jsonable_row(row)


def claim_candidates(
    conn: psycopg.Connection[Any], run_type: str, *, limit: int = 50, model_name: str | None = None
) -> list[Row]:
    """Claimable tasks of a run type, oldest first (the worker's model first when given).

    Balances and per-owner running limits are checked by the dispatcher
    (`domain.claiming`); this is the index-backed shortlist.
    """
    rows = conn.execute(
        "SELECT task_id, project_id, owner_id, run_type, model_name, category, created_at "
        "FROM task_claim_queue WHERE run_type = %s "
        "ORDER BY (model_name IS NOT DISTINCT FROM %s) DESC, created_at, task_id LIMIT %s",
        (run_type, model_name, max(1, min(int(limit), 1000))),
    ).fetchall()
    return [jsonable_row(r) for r in rows]


def tasks_snapshot(conn: psycopg.Connection[Any], project_id: str) -> dict[str, Any]:
    """The `tasks:<project id>` topic's snapshot: the newest 1,000 tasks and the counts."""
    return task_board(conn, project_id, limit=1000)


CLAIMABLE = (
    "SELECT q.task_id::text AS task_id, q.run_type FROM task_claim_queue q "
    "JOIN tasks t ON t.id = q.task_id "
    "WHERE q.run_type = ANY(%s) AND t.task_type = ANY(%s) "
    "ORDER BY q.created_at, q.task_id LIMIT %s"
)


def claimable(
    conn: psycopg.Connection[Any],
    run_types: Sequence[str],
    task_types: Collection[str],
    limit: int,
) -> list[tuple[str, str]]:
    """(task id, run type) of queued tasks with complete dependencies, oldest first, of
    the given run and task types: the claim queue joined to the task board for the task
    type (the dispatcher's candidates)."""
    cur = conn.cursor(row_factory=tuple_row)
    rows = cur.execute(CLAIMABLE, (list(run_types), sorted(task_types), limit)).fetchall()
    return [(task_id, run_type) for task_id, run_type in rows]

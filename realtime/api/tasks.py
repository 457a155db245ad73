"""Tasks: unified creation (families, seed 001), typed creation (seed 000), status changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any
from uuid import UUID

from domain import families
from domain.errors import TaskNotFoundError
from domain.services.taskresults import TasksCreated
from domain.task import Task
from realtime import models as m
from realtime.api import reads
from realtime.api.base import Call, Endpoint, Reply, validate, written

RUN_TYPES = m.RUN_TYPES


async def _project_facts(call: Call, project_id: UUID) -> m.ProjectFacts:
    return await call.run(_facts, call.studio, project_id, call.user)


def _facts(studio: Any, project_id: UUID, user: str | None) -> m.ProjectFacts:
    project = studio.live_project(project_id, user)
    return m.ProjectFacts(aspect_ratio=project.aspect_ratio)


def _key(call: Call, body_key: str | None) -> str | None:
    return body_key or call.request.headers.get("idempotency-key") or None


async def _limit(call: Call, project_id: UUID, units: int) -> None:
    owner = call.principal.user_id or await call.run(call.studio.owner_of, project_id)
    call.state.rate_limiter.take(owner, units)


async def _queue(
    call: Call,
    project_id: UUID,
    specs: Callable[[], list[m.TaskSpec]],
    batch: bool,
    key: str | None,
) -> Reply:
    """The tasks `specs()` makes, rate-limited and created: the whole in one hand-off to a
    command thread (the project's facts read, the limit taken, the command), in that order."""
    studio, user, principal, meta = call.studio, call.user, call.principal, _meta(call)
    limiter = call.state.rate_limiter

    # Named for the verb: a 503 while shutting down says which call was not run.
    def create_tasks() -> TasksCreated:
        made = specs()
        limiter.take(principal.user_id or studio.owner_of(project_id), len(made))
        return studio.create_tasks(
            project_id, user, [asdict(s) for s in made], idempotency_key=key, meta=meta
        )

    result = await call.run(create_tasks)
    body = result.as_json()
    ids = body.pop("task_ids")
    shape: dict[str, Any] = {"task_ids": ids} if batch else {"task_id": ids[0]}
    return written({**body, **shape, "status": "Queued"}, 201)


async def _run(call: Call, project_id: UUID, run: m.RunInput, key: str | None) -> Reply:
    """Travel or join: the orchestrator and its whole family, in one command."""
    facts = await _project_facts(call, project_id)
    await _limit(call, project_id, 1)
    params = run.run_params(facts)
    if isinstance(run, m.TravelBetweenImagesInput):
        result = await call.run(
            call.studio.create_travel,
            project_id,
            call.user,
            shot_id=run.shot_id,
            image_generation_ids=run.image_generation_ids,
            image_urls=run.image_urls,
            params=params,
            idempotency_key=key,
            meta=_meta(call),
        )
    else:
        assert isinstance(run, m.JoinClipsInput)
        result = await call.run(
            call.studio.create_join_clips,
            project_id,
            call.user,
            clip_generation_ids=run.clip_generation_ids,
            clip_urls=run.clip_urls,
            params=params,
            idempotency_key=key,
            meta=_meta(call),
        )
    body = {**result.as_json(), "task_id": str(result.orchestrator_task_id)}
    return written({**body, "status": "In Progress"}, 201)


def _meta(call: Call) -> Any:
    """Task creation is made idempotent by the task key itself, not the command key."""
    meta = call.meta()
    return type(meta)(**{**vars(meta), "idempotency_key": None})


async def create_task(call: Call) -> Reply:
    body: m.TaskCreate = call.body
    key = _key(call, body.idempotency_key)
    if body.family is not None:
        family = families.FAMILIES[body.family]
        family_input = validate(m.family_model(body.family), body.input, "body.input")
        if isinstance(family_input, m.RunInput):
            return await _run(call, body.project_id, family_input, key)
        studio, project_id, user = call.studio, body.project_id, call.user

        def specs() -> list[m.TaskSpec]:
            return family_input.to_tasks(_facts(studio, project_id, user))

        return await _queue(call, project_id, specs, family.batch, key)
    if body.task_type in RUN_TYPES:
        params = dict(body.params or {})
        params.update(params.pop("orchestrator_details", None) or {})
        run: m.RunInput = validate(RUN_TYPES[body.task_type], params, "body.params")
        return await _run(call, body.project_id, run, key)
    spec = m.TaskSpec(
        task_type=body.task_type or "", params=body.params or {}, dependant_on=body.dependant_on
    )
    return await _queue(call, body.project_id, lambda: [spec], False, key)


async def travel(call: Call) -> Reply:
    body: m.TravelRequest = call.body
    run = m.TravelBetweenImagesInput.model_validate(
        body.model_dump(exclude={"project_id", "idempotency_key"}, exclude_none=True)
    )
    return await _run(call, body.project_id, run, _key(call, body.idempotency_key))


async def list_tasks(call: Call) -> Reply:
    query: m.TaskList = call.query
    return Reply(await reads.tasks(call, query.project_id, query.status))


def _iso(at: Any) -> str | None:
    return None if at is None else at.isoformat()


def details(row: dict[str, Any], task: Task) -> dict[str, Any]:
    """The task details modal (seed 000 §3.3.2): the view's row (`params_summary` and
    the flat fields older clients read) with the task's own state over it: full params,
    outputs, error, attempts, worker, timings and cost."""
    processed = task.processed_at
    started = task.started_at
    duration = (processed - started).total_seconds() if processed and started else None
    timings = {
        "created_at": _iso(task.created_at),
        "started_at": _iso(started),
        "processed_at": _iso(processed),
        "updated_at": _iso(task.modified_on),
        "duration_s": duration,
    }
    cost = None if task.cost is None else str(task.cost)
    return {
        **row,
        "status": task.status,
        "attempts": task.attempts,
        "worker_id": task.worker_id,
        "error": task.error_message,
        "output_location": task.output_location,
        "thumbnail_url": task.thumbnail_url,
        "cost": cost,
        "started_at": timings["started_at"],
        "processed_at": timings["processed_at"],
        "params": task.params,
        "outputs": {
            "output_location": task.output_location,
            "thumbnail_url": task.thumbnail_url,
            "result_data": task.result_data,
        },
        "error_message": task.error_message,
        "timings": timings,
        "child_task_ids": [str(t) for t in task.child_task_ids],
    }


async def get_task(call: Call) -> Reply:
    row = await reads.task(call, call.path["id"])
    task = await call.run(call.studio.task, call.path["id"], call.user)
    return Reply(details(row, task))


async def generation_task(call: Call) -> Reply:
    task = await call.run(call.studio.task_of_generation, call.path["id"], call.user)
    row = await reads.task(call, task.id)
    return Reply(details(row, task))


async def cancel(call: Call) -> Reply:
    return written(
        await call.run(call.studio.cancel_task, call.path["id"], call.user, meta=call.meta())
    )


def own_task(call: Call, task_id: UUID) -> None:
    """A user's credentials act only on that user's tasks (others' answer 404).

    Worker verbs take no user; the check reads the task aggregate (a write path)."""
    user = call.user
    if user is None:
        return
    try:
        task: object = call.studio.repository.get(task_id)
    except Exception:  # AggregateNotFoundError, or an id of another kind
        raise TaskNotFoundError(task_id) from None
    if not isinstance(task, Task) or task.owner_id != user:
        raise TaskNotFoundError(task_id)


async def set_status(call: Call) -> Reply:
    body: m.TaskStatusChange = call.body
    await call.run(own_task, call, call.path["id"])
    result = await call.run(
        call.studio.update_status,
        call.path["id"],
        body.status,
        error_message=body.error_message,
        worker_id=body.worker_id,
        output_location=body.output_location,
        meta=call.meta(worker_id=body.worker_id),
    )
    return written(result)


async def cancel_pending(call: Call) -> Reply:
    body: m.CancelPending = call.body
    return written(
        await call.run(call.studio.cancel_pending, body.project_id, call.user, meta=call.meta())
    )


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/tasks",
        create_task,
        "Queue tasks: a family with its input "
        "(batch families answer `task_ids`), or a catalogue `task_type` with params",
        "tasks",
        body=m.TaskCreate,
        response=m.TaskCreated,
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/tasks",
        list_tasks,
        "Tasks of a project, newest first",
        "tasks",
        query=m.TaskList,
        response=list[m.Task],
    ),
    Endpoint(
        "POST",
        "/api/tasks/cancel-pending",
        cancel_pending,
        "Cancel every Queued task of a project",
        "tasks",
        body=m.CancelPending,
        response=m.Cancelled,
    ),
    Endpoint(
        "GET",
        "/api/tasks/{id}",
        get_task,
        "One task with its details: full params, "
        "outputs (`output_location`, `thumbnail_url`, `result_data`), error, attempts, "
        "worker, timings and cost",
        "tasks",
        query=m.Query,
        response=m.TaskDetails,
    ),
    Endpoint(
        "GET",
        "/api/generations/{id}/task",
        generation_task,
        "The task that made a "
        "generation, with its details (404 when no task made it, e.g. an upload)",
        "tasks",
        query=m.Query,
        response=m.TaskDetails,
    ),
    Endpoint(
        "PATCH",
        "/api/tasks/{id}/cancel",
        cancel,
        "Cancel a task (and its relatives)",
        "tasks",
        response=m.Written,
    ),
    Endpoint(
        "PATCH",
        "/api/tasks/{id}/status",
        set_status,
        "Set a task's status (workers; refused transitions: 409 with the allowed ones)",
        "tasks",
        body=m.TaskStatusChange,
        response=m.Written,
        auth="worker",
    ),
    Endpoint(
        "POST",
        "/api/steerable-motion/travel-between-images",
        travel,
        "Start a travel_orchestrator run (seed 000)",
        "tasks",
        body=m.TravelRequest,
        response=m.TaskCreated,
        status=201,
    ),
]

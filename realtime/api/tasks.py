"""Tasks: unified creation (families, seed 001), typed creation (seed 000), status changes."""

from __future__ import annotations

from typing import Any

from realtime import models as m
from realtime.api import reads
from realtime.api.base import Call, Endpoint, Reply, validate, written


async def _project_facts(call: Call, project_id: Any) -> m.ProjectFacts:
    project = await call.run(call.studio.live_project, project_id, call.user)
    return m.ProjectFacts(aspect_ratio=project.aspect_ratio)


def _owner(call: Call, project_id: Any) -> str:
    return call.principal.user_id or call.studio.owner_of(project_id)


async def _queue(call: Call, project_id: Any, specs: list[m.TaskSpec], batch: bool,
                 idempotency_key: str | None) -> Reply:
    owner = call.principal.user_id or await call.run(call.studio.owner_of, project_id)
    call.state.rate_limiter.take(owner, len(specs))
    meta = call.meta()
    if idempotency_key and not meta.idempotency_key:
        meta = type(meta)(**{**vars(meta), "idempotency_key": idempotency_key})
    result = await call.run(call.studio.create_tasks, project_id, call.user,
                            [s.model_dump() for s in specs], meta=meta)
    ids = result["task_ids"]
    shape = {"task_ids": ids} if batch else {"task_id": ids[0]}
    return written({**{k: v for k, v in result.items() if k != "task_ids"}, **shape,
                    "status": "Queued"}, 201)


async def create_task(call: Call) -> Reply:
    body: m.TaskCreate = call.body
    if body.family is not None:
        family = m.FAMILIES[body.family]
        spec_input = validate(family, body.input, "body.input")
        facts = await _project_facts(call, body.project_id)
        try:
            specs = spec_input.to_tasks(facts)
        except ValueError as error:
            raise _invalid("body.input", str(error)) from None
        return await _queue(call, body.project_id, specs, family.batch, body.idempotency_key)
    spec = m.TaskSpec(task_type=body.task_type or "", params=body.params or {},
                      dependant_on=body.dependant_on)
    return await _queue(call, body.project_id, [spec], False, body.idempotency_key)


async def travel(call: Call) -> Reply:
    body: m.TravelRequest = call.body
    facts = await _project_facts(call, body.project_id)
    extra = {"project_id", "idempotency_key"}
    family_input = m.TravelBetweenImagesInput.model_validate(
        body.model_dump(exclude=extra, exclude_none=True))
    return await _queue(call, body.project_id, family_input.to_tasks(facts), False,
                        body.idempotency_key)


def _invalid(where: str, message: str) -> Exception:
    from realtime.errors import FieldsInvalidError

    return FieldsInvalidError(f"invalid fields: {where}: {message}",
                              errors=[{"path": where, "loc": where.split("."),
                                       "message": message, "type": "value_error"}])


async def list_tasks(call: Call) -> Reply:
    query: m.TaskList = call.query
    return Reply(await reads.tasks(call, query.project_id, query.status))


async def get_task(call: Call) -> Reply:
    return Reply(await reads.task(call, call.path["id"]))


async def cancel(call: Call) -> Reply:
    return written(await call.run(call.studio.cancel_task, call.path["id"], call.user,
                                  meta=call.meta()))


async def set_status(call: Call) -> Reply:
    body: m.TaskStatusChange = call.body
    result = await call.run(call.studio.set_task_status, call.path["id"], call.user,
                            body.status, error_message=body.error_message,
                            worker_id=body.worker_id, output_location=body.output_location,
                            meta=call.meta(worker_id=body.worker_id))
    return written(result)


async def cancel_pending(call: Call) -> Reply:
    body: m.CancelPending = call.body
    return written(await call.run(call.studio.cancel_pending_tasks, body.project_id,
                                  call.user, meta=call.meta()))


ENDPOINTS = [
    Endpoint("POST", "/api/tasks", create_task, "Queue tasks: a family with its input "
             "(batch families answer `task_ids`), or a catalogue `task_type` with params",
             "tasks", body=m.TaskCreate, response=m.TaskCreated, status=201),
    Endpoint("GET", "/api/tasks", list_tasks, "Tasks of a project, newest first",
             "tasks", query=m.TaskList, response=list[m.Task]),
    Endpoint("POST", "/api/tasks/cancel-pending", cancel_pending, "Cancel every Queued task "
             "of a project", "tasks", body=m.CancelPending, response=m.Cancelled),
    Endpoint("GET", "/api/tasks/{id}", get_task, "One task", "tasks", query=m.Query,
             response=m.Task),
    Endpoint("PATCH", "/api/tasks/{id}/cancel", cancel, "Cancel a task (and its relatives)",
             "tasks", response=m.Written),
    Endpoint("PATCH", "/api/tasks/{id}/status", set_status, "Set a task's status "
             "(refused transitions: 409 with the allowed ones)", "tasks",
             body=m.TaskStatusChange, response=m.Written),
    Endpoint("POST", "/api/steerable-motion/travel-between-images", travel, "Queue a "
             "travel_orchestrator (seed 000)", "tasks", body=m.TravelRequest,
             response=m.TaskCreated, status=201),
]

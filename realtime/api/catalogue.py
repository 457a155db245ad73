"""The task-type catalogue: read by any caller, changed by the service key only."""

from __future__ import annotations

from typing import Any

from domain.catalogue import TaskType
from realtime import models as m
from realtime.api.base import Call, Endpoint, Reply, written


def _row(task_type: TaskType) -> dict[str, Any]:
    return task_type.as_dict()


async def list_task_types(call: Call) -> Reply:
    types = await call.run(call.studio.task_types)
    return Reply([_row(t) for t in types])


async def register_task_type(call: Call) -> Reply:
    body: m.TaskTypeSpec = call.body
    spec = body.model_dump()
    spec["base_cost_per_second"] = str(spec["base_cost_per_second"])
    spec["unit_cost"] = str(spec["unit_cost"])
    result = await call.run(call.studio.register_task_type, spec, meta=call.meta())
    return written(result, 201)


async def activate_task_type(call: Call) -> Reply:
    result = await call.run(call.studio.activate_task_type, call.path["name"], meta=call.meta())
    return written(result)


async def deactivate_task_type(call: Call) -> Reply:
    result = await call.run(call.studio.deactivate_task_type, call.path["name"], meta=call.meta())
    return written(result)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/task-types",
        list_task_types,
        "The active task types: run type, category, billing, costs, variant type",
        "catalogue",
        response=list[m.TaskTypeOut],
        auth="any",
    ),
    Endpoint(
        "POST",
        "/api/task-types",
        register_task_type,
        "Register a task type, or replace the row of that name (service key)",
        "catalogue",
        body=m.TaskTypeSpec,
        response=m.Written,
        status=201,
        auth="service",
    ),
    Endpoint(
        "POST",
        "/api/task-types/{name}/activate",
        activate_task_type,
        "Activate a task type (service key; 422 unknown_task_type)",
        "catalogue",
        response=m.Written,
        auth="service",
    ),
    Endpoint(
        "POST",
        "/api/task-types/{name}/deactivate",
        deactivate_task_type,
        "Deactivate a task type: new tasks of it are refused (service key)",
        "catalogue",
        response=m.Written,
        auth="service",
    ),
]

"""Projects: list (a first listing makes the "Default Project"), create, read, update,
delete, restore; `?deleted=true` lists the deleted ones."""

from __future__ import annotations

from realtime import models as m
from realtime.api import reads
from realtime.api.base import Call, Endpoint, Reply, written


async def list_projects(call: Call) -> Reply:
    user = call.principal.require_user()
    query: m.ProjectList = call.query
    if query.deleted:
        return Reply(await reads.projects(call, user, deleted=True))
    projects = await reads.projects(call, user)
    if not projects:
        result = await call.run(call.studio.create_default_project, user)
        projects = await reads.projects(call, user, at_least=result.position)
        return Reply(projects, position=result.position)
    return Reply(projects)


async def create_project(call: Call) -> Reply:
    user = call.principal.require_user()
    body: m.ProjectCreate = call.body
    result = await call.run(
        call.studio.create_project,
        user,
        body.name,
        body.aspect_ratio or "16:9",
        body.settings,
        meta=call.meta(),
    )
    project = {
        "id": result.project_id,
        "name": body.name,
        "aspect_ratio": body.aspect_ratio or "16:9",
        "settings": body.settings or {},
    }
    return written(result, 201, **project)


async def get_project(call: Call) -> Reply:
    return Reply(await reads.project(call, call.path["id"]))


async def update_project(call: Call) -> Reply:
    body: m.ProjectUpdate = call.body
    result = await call.run(
        call.studio.update_project,
        call.path["id"],
        call.user,
        name=body.name,
        aspect_ratio=body.aspect_ratio,
        settings=body.settings,
        meta=call.meta(),
    )
    return written(result)


async def delete_project(call: Call) -> Reply:
    result = await call.run(
        call.studio.delete_project, call.path["id"], call.user, meta=call.meta()
    )
    return written(result)


async def restore_project(call: Call) -> Reply:
    """`Project.restore` (soft delete undone; refused with 422 when the project is not
    deleted): its shots and generations answer again."""
    result = await call.run(
        call.studio.restore_project, call.path["id"], call.user, meta=call.meta()
    )
    return written(result)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/projects",
        list_projects,
        "The caller's projects (a first listing "
        'creates "Default Project"); ?deleted=true: the deleted ones',
        "projects",
        query=m.ProjectList,
        response=list[m.Project],
    ),
    Endpoint(
        "POST",
        "/api/projects",
        create_project,
        "Create a project",
        "projects",
        body=m.ProjectCreate,
        response=m.Written,
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/projects/{id}",
        get_project,
        "One project",
        "projects",
        query=m.Query,
        response=m.Project,
    ),
    Endpoint(
        "PUT",
        "/api/projects/{id}",
        update_project,
        "Rename, re-ratio or re-set",
        "projects",
        body=m.ProjectUpdate,
        response=m.Written,
    ),
    Endpoint(
        "DELETE",
        "/api/projects/{id}",
        delete_project,
        "Soft-delete a project",
        "projects",
        response=m.Written,
    ),
    Endpoint(
        "POST",
        "/api/projects/{id}/restore",
        restore_project,
        "Restore a deleted project",
        "projects",
        response=m.Written,
    ),
]

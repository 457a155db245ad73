"""Shots and their members: ordered images on a video timeline."""

from __future__ import annotations

from realtime import models as m
from realtime.api import reads
from realtime.api.base import Call, Endpoint, Handler, Reply, written


async def list_shots(call: Call) -> Reply:
    query: m.ShotList = call.query
    return Reply(await reads.shots(call, query.project_id))


async def create_shot(call: Call) -> Reply:
    body: m.ShotCreate = call.body
    result = await call.run(
        call.studio.create_shot,
        body.project_id,
        call.user,
        body.name,
        body.aspect_ratio,
        body.settings,
        body.generation_id,
        meta=call.meta(),
    )
    return written(result, 201, id=result.shot_id)


async def get_shot(call: Call) -> Reply:
    return Reply(await reads.shot(call, call.path["id"]))


async def update_shot(call: Call) -> Reply:
    body: m.ShotUpdate = call.body
    return written(
        await call.run(
            call.studio.update_shot,
            call.path["id"],
            call.user,
            name=body.name,
            aspect_ratio=body.aspect_ratio,
            settings=body.settings,
            meta=call.meta(),
        )
    )


def _verb(name: str) -> Handler:
    async def handler(call: Call) -> Reply:
        verb = getattr(call.studio, name)
        return written(await call.run(verb, call.path["id"], call.user, meta=call.meta()))

    handler.__name__ = name
    return handler


async def duplicate_shot(call: Call) -> Reply:
    result = await call.run(
        call.studio.duplicate_shot, call.path["id"], call.user, meta=call.meta()
    )
    return written(result, 201, id=result.shot_id)


async def add_to_shot(call: Call) -> Reply:
    body: m.ShotGenerationAdd = call.body
    result = await call.run(
        call.studio.add_to_shot,
        body.shot_id,
        call.user,
        body.generation_id,
        body.with_position,
        body.timeline_frame,
        body.metadata,
        meta=call.meta(),
    )
    return written(result, 201)


async def reorder(call: Call) -> Reply:
    body: m.ShotOrder = call.body
    return written(
        await call.run(
            call.studio.reorder_shot,
            call.path["id"],
            call.user,
            body.ordered_generation_ids,
            meta=call.meta(),
        )
    )


async def move_member(call: Call) -> Reply:
    """By a generation id (its earliest appearance) or a membership id."""
    body: m.ShotMemberMove = call.body
    return written(
        await call.run(
            call.studio.place_in_shot,
            call.path["id"],
            call.user,
            call.path["generation_id"],
            body.timeline_frame,
            meta=call.meta(),
        )
    )


async def move_membership(call: Call) -> Reply:
    """One appearance by its own id (an image in a shot twice)."""
    body: m.ShotMemberMove = call.body
    return written(
        await call.run(
            call.studio.place_in_shot,
            call.path["id"],
            call.user,
            call.path["membership_id"],
            body.timeline_frame,
            membership_only=True,
            meta=call.meta(),
        )
    )


async def order_project_shots(call: Call) -> Reply:
    body: m.ProjectShotOrder = call.body
    return written(
        await call.run(
            call.studio.order_shots, call.path["id"], call.user, body.shot_ids, meta=call.meta()
        )
    )


async def remove_member(call: Call) -> Reply:
    return written(
        await call.run(
            call.studio.remove_from_shot,
            call.path["id"],
            call.user,
            call.path["generation_id"],
            meta=call.meta(),
        )
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/shots",
        list_shots,
        "Shots of a project in position order, each with its ordered images",
        "shots",
        query=m.ShotList,
        response=list[m.Shot],
    ),
    Endpoint(
        "POST",
        "/api/shots",
        create_shot,
        "Create a shot (with `generation_id`: that image at frame 0)",
        "shots",
        body=m.ShotCreate,
        response=m.Written,
        status=201,
    ),
    Endpoint(
        "POST",
        "/api/shots/shot_generations",
        add_to_shot,
        "Add a generation to a shot",
        "shots",
        body=m.ShotGenerationAdd,
        response=m.Written,
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/shots/{id}",
        get_shot,
        "One shot with its images",
        "shots",
        query=m.Query,
        response=m.Shot,
    ),
    Endpoint(
        "PUT",
        "/api/shots/{id}",
        update_shot,
        "Rename or re-set a shot",
        "shots",
        body=m.ShotUpdate,
        response=m.Written,
    ),
    Endpoint(
        "DELETE",
        "/api/shots/{id}",
        _verb("delete_shot"),
        "Soft-delete a shot",
        "shots",
        response=m.Written,
    ),
    Endpoint(
        "POST",
        "/api/shots/{id}/restore",
        _verb("restore_shot"),
        "Restore a deleted shot and its members",
        "shots",
        response=m.Written,
    ),
    Endpoint(
        "POST",
        "/api/shots/{id}/duplicate",
        duplicate_shot,
        'Copy a shot: "<name> (copy)", positioned non-video members',
        "shots",
        response=m.Written,
        status=201,
    ),
    Endpoint(
        "PUT",
        "/api/shots/{id}/generations/order",
        reorder,
        "Frames 0, 50, 100… in the given order",
        "shots",
        body=m.ShotOrder,
        response=m.Written,
    ),
    Endpoint(
        "PATCH",
        "/api/shots/{id}/generations/{generation_id}",
        move_member,
        "Move a generation on the shot's timeline (`timeline_frame`; null takes it off "
        "the timeline). A generation id names its earliest appearance; a membership id "
        "(`shot_generation_id`) names one appearance",
        "shots",
        body=m.ShotMemberMove,
        response=m.ShotMemberMoved,
    ),
    Endpoint(
        "PATCH",
        "/api/shots/{id}/memberships/{membership_id}",
        move_membership,
        "Move one membership (`shot_generation_id`) on the timeline: for an image that "
        "is in the shot more than once",
        "shots",
        body=m.ShotMemberMove,
        response=m.ShotMemberMoved,
    ),
    Endpoint(
        "PUT",
        "/api/projects/{id}/shots/order",
        order_project_shots,
        "Reorder a project's shots: positions 0..n-1 in the given order; every live "
        "shot of the project exactly once (else 422)",
        "shots",
        body=m.ProjectShotOrder,
        response=m.ShotsOrdered,
    ),
    Endpoint(
        "DELETE",
        "/api/shots/{id}/generations/{generation_id}",
        remove_member,
        "Remove a generation (or a membership id) from a shot",
        "shots",
        response=m.Written,
    ),
    Endpoint(
        "POST",
        "/api/shots/{id}/fix-spacing",
        _verb("fix_shot_spacing"),
        "Respace positioned images 50 apart (tighter to fit 81 frames)",
        "shots",
        response=m.Written,
    ),
]

"""Generations (gallery items) and their variants."""

from __future__ import annotations

from domain.generation import KEEP
from domain.services.written import GenerationWritten
from realtime import models as m
from realtime.api import reads
from realtime.api.base import Call, Endpoint, Reply, written


async def list_generations(call: Call) -> Reply:
    return Reply(await reads.generations(call, call.query))


async def create_generation(call: Call) -> Reply:
    body: m.GenerationCreate = call.body
    result = await call.run(
        call.studio.create_generation,
        body.project_id,
        call.user,
        body.location,
        body.type,
        thumbnail_url=body.thumbnail_url,
        name=body.name,
        params=body.params,
        based_on=body.based_on,
        shot_id=body.shot_id,
        with_position=body.with_position,
        meta=call.meta(),
    )
    return written(result, 201, id=result.generation_id)


async def get_generation(call: Call) -> Reply:
    return Reply(await reads.generation(call, call.path["id"]))


async def patch_generation(call: Call) -> Reply:
    body: m.GenerationPatch = call.body
    ident, studio, meta = call.path["id"], call.studio, call.meta()
    fields = body.model_fields_set

    def change() -> GenerationWritten:
        # One command for both fields: atomic, and a repeat under the same
        # Idempotency-Key replays both instead of running the rename again.
        return studio.update_generation(
            ident,
            call.user,
            starred=body.starred if "starred" in fields else None,
            name=body.name if "name" in fields else KEEP,
            meta=meta,
        )

    return written(await call.run(change))


async def delete_generation(call: Call) -> Reply:
    return written(
        await call.run(call.studio.delete_generation, call.path["id"], call.user, meta=call.meta())
    )


async def restore_generation(call: Call) -> Reply:
    """`restore_generation`: a composite's children and the shot memberships come back;
    422 when not deleted, when a child's parent is still deleted; 404 in a deleted
    project."""
    return written(
        await call.run(call.studio.restore_generation, call.path["id"], call.user, meta=call.meta())
    )


async def list_children(call: Call) -> Reply:
    return Reply(await reads.children(call, call.path["id"]))


async def get_lineage(call: Call) -> Reply:
    return Reply(await reads.lineage(call, call.path["id"]))


async def list_variants(call: Call) -> Reply:
    return Reply(await reads.variants(call, call.path["id"]))


async def add_variant(call: Call) -> Reply:
    body: m.VariantCreate = call.body
    result = await call.run(
        call.studio.add_variant,
        call.path["id"],
        call.user,
        body.location,
        variant_type=body.variant_type,
        thumbnail_url=body.thumbnail_url,
        params=body.params,
        name=body.name,
        make_primary=body.make_primary,
        meta=call.meta(),
    )
    return written(result, 201, id=result.variant_id)


async def make_primary(call: Call) -> Reply:
    return written(
        await call.run(
            call.studio.make_variant_primary,
            call.path["id"],
            call.user,
            call.path["variant_id"],
            meta=call.meta(),
        )
    )


async def patch_variant(call: Call) -> Reply:
    """`update_variant`: viewed ("NEW" badge), starred and name in one command."""
    body: m.VariantPatch = call.body
    fields = body.model_fields_set
    return written(
        await call.run(
            call.studio.update_variant,
            call.path["id"],
            call.user,
            call.path["variant_id"],
            viewed=body.viewed,
            starred=body.starred,
            name=body.name if "name" in fields else KEEP,
            meta=call.meta(),
        )
    )


async def delete_variant(call: Call) -> Reply:
    return written(
        await call.run(
            call.studio.delete_variant,
            call.path["id"],
            call.user,
            call.path["variant_id"],
            meta=call.meta(),
        )
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/generations",
        list_generations,
        "The gallery of a project, newest "
        "first, filtered, in keyset pages (?deleted=true: its deleted generations)",
        "generations",
        query=m.GenerationList,
        response=m.GenerationPage,
    ),
    Endpoint(
        "POST",
        "/api/generations",
        create_generation,
        "An upload: a generation with an original primary variant",
        "generations",
        body=m.GenerationCreate,
        response=m.Written,
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/generations/{id}",
        get_generation,
        "One generation",
        "generations",
        query=m.Query,
        response=m.Generation,
    ),
    Endpoint(
        "PATCH",
        "/api/generations/{id}",
        patch_generation,
        "Star or rename",
        "generations",
        body=m.GenerationPatch,
        response=m.Written,
    ),
    Endpoint(
        "DELETE",
        "/api/generations/{id}",
        delete_generation,
        "Soft-delete (children go too)",
        "generations",
        response=m.Written,
    ),
    Endpoint(
        "POST",
        "/api/generations/{id}/restore",
        restore_generation,
        "Restore a deleted generation (its children and shot memberships come back)",
        "generations",
        response=m.Written,
    ),
    Endpoint(
        "GET",
        "/api/generations/{id}/children",
        list_children,
        "A composite's children in child_order, in keyset pages",
        "generations",
        query=m.ChildrenList,
        response=m.GenerationPage,
    ),
    Endpoint(
        "GET",
        "/api/generations/{id}/lineage",
        get_lineage,
        "What a generation was "
        "made from (its based_on chain, nearest first, at most `depth`) and what was "
        "made from it (one level, newest first, in keyset pages); within its project",
        "generations",
        query=m.LineageQuery,
        response=m.Lineage,
    ),
    Endpoint(
        "GET",
        "/api/generations/{id}/variants",
        list_variants,
        "Variants of a generation",
        "generations",
        query=m.Query,
        response=list[m.Variant],
    ),
    Endpoint(
        "POST",
        "/api/generations/{id}/variants",
        add_variant,
        "Add a variant",
        "generations",
        body=m.VariantCreate,
        response=m.Written,
        status=201,
    ),
    Endpoint(
        "POST",
        "/api/generations/{id}/variants/{variant_id}/primary",
        make_primary,
        "Make a variant primary",
        "generations",
        response=m.Written,
    ),
    Endpoint(
        "PATCH",
        "/api/generations/{id}/variants/{variant_id}",
        patch_variant,
        'Mark a variant viewed or not (the "NEW" badge), star it, rename it (any of the three)',
        "generations",
        body=m.VariantPatch,
        response=m.VariantEdited,
    ),
    Endpoint(
        "DELETE",
        "/api/generations/{id}/variants/{variant_id}",
        delete_variant,
        "Delete a variant (never the original)",
        "generations",
        response=m.Written,
    ),
]

"""Personal access tokens: listed by label, the value shown once, revocable."""

from __future__ import annotations

from realtime import models as m
from realtime.api.base import Call, Endpoint, Reply, written


async def list_tokens(call: Call) -> Reply:
    # Tokens live on the User aggregate (a handful of events), not in a view.
    return Reply(await call.run(call.studio.tokens, call.principal.require_user()))


async def issue(call: Call) -> Reply:
    body: m.TokenCreate = call.body
    result = await call.run(
        call.studio.issue_token, call.principal.require_user(), body.label, meta=call.meta()
    )
    return written(result, 201, id=result.token_id)


async def revoke(call: Call) -> Reply:
    return written(
        await call.run(
            call.studio.revoke_token,
            call.principal.require_user(),
            call.path["id"],
            meta=call.meta(),
        )
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/tokens",
        list_tokens,
        "The caller's tokens (labels, never values)",
        "tokens",
        query=m.Query,
        response=list[m.Token],
        auth="user",
    ),
    Endpoint(
        "POST",
        "/api/tokens",
        issue,
        "Issue a token; its value is in this answer only",
        "tokens",
        body=m.TokenCreate,
        response=m.TokenCreated,
        status=201,
        auth="user",
    ),
    Endpoint(
        "DELETE",
        "/api/tokens/{id}",
        revoke,
        "Revoke a token",
        "tokens",
        response=m.Written,
        auth="user",
    ),
]

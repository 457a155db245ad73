"""Credits: a user's balance and ledger; grants by the service key."""

from __future__ import annotations

from realtime import models as m
from realtime.api import reads
from realtime.api.base import Call, Endpoint, Reply, written


async def get_credits(call: Call) -> Reply:
    return Reply(await reads.credits(call, call.principal.require_user()))


async def grant(call: Call) -> Reply:
    body: m.CreditGrant = call.body
    await call.state.auth.ensure_known(body.user_id)
    result = await call.run(
        call.studio.grant_credits, body.user_id, body.amount, body.reason, meta=call.meta()
    )
    return written(result, 201)


async def top_up(call: Call) -> Reply:
    body: m.CreditTopUp = call.body
    await call.state.auth.ensure_known(body.user_id)
    result = await call.run(
        call.studio.top_up_credits, body.user_id, body.amount, body.reference, meta=call.meta()
    )
    return written(result, 201 if result.added else 200, balance=float(result.balance))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/credits",
        get_credits,
        "The caller's balance and ledger",
        "credits",
        query=m.Query,
        response=m.Credits,
        auth="user",
    ),
    Endpoint(
        "POST",
        "/api/credits/grant",
        grant,
        "Grant credits to a user (service key)",
        "credits",
        body=m.CreditGrant,
        response=m.Written,
        status=201,
        auth="service",
    ),
    Endpoint(
        "POST",
        "/api/credits/top-up",
        top_up,
        "Add bought credits to a user (service key); a replayed reference adds nothing",
        "credits",
        body=m.CreditTopUp,
        response=m.TopUp,
        status=201,
        auth="service",
        other_statuses={200: m.TopUp},
    ),
]

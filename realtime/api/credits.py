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
    result = await call.run(call.studio.grant_credits, body.user_id, body.amount, body.reason,
                            meta=call.meta())
    return written(result, 201)


ENDPOINTS = [
    Endpoint("GET", "/api/credits", get_credits, "The caller's balance and ledger", "credits",
             query=m.Query, response=m.Credits, auth="user"),
    Endpoint("POST", "/api/credits/grant", grant, "Grant credits to a user (service key)",
             "credits", body=m.CreditGrant, response=m.Written, status=201, auth="service"),
]

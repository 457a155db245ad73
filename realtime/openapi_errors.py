"""The refusals an OpenAPI operation declares (realtime/openapi.py): every one is the
`Error` shape of realtime/errors.py, and which an operation can give follows from its
declaration.
"""

from __future__ import annotations

from realtime import models as m
from realtime.api.base import Endpoint
from realtime.openapi_links import creates

RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
# Every refusal is the `Error` shape of realtime/errors.py; which one an operation can
# give follows from its declaration (`error_statuses`).
ERRORS = {
    400: "Malformed JSON, or no body where one is needed (`malformed_json`, `missing_body`)",
    401: "No, bad, expired or revoked credentials (`unauthenticated`, "
    "`token_expired`, `invalid_token`, `invalid_subject`, ...)",
    402: "The task owner's balance is spent (`insufficient_credits`)",
    403: "Not allowed for this caller (`forbidden`, `service_only`, "
    "`worker_credentials_required`, ...)",
    404: "An id in the path, query or body that does not exist or is not the "
    "caller's (`not_found`, `project_not_found`, ...)",
    409: "A conflict: a refused transition (`invalid_transition`, with its facts), a "
    "lost version race (`concurrency_conflict`), the same idempotency key still "
    "in flight (`idempotency_key_in_flight`, `Retry-After`)",
    413: "The body (or upload) is over the limit (`body_too_large`, `upload_over_quota`)",
    422: "Invalid fields with their paths (`invalid_fields`, `nul_character`), a value "
    "the domain refuses (`invalid`, `invalid_shot_order`, ...), a cursor this "
    "server did not issue (`invalid_cursor`), a `min_position` past the log's "
    "head (`position_not_written`), an idempotency key reused with another "
    "route or body (`idempotency_key_reused`)",
    429: "Rate limited or over the daily upload quota (`rate_limited`, "
    "`upload_quota_exceeded`; `Retry-After`)",
    503: "No database connection came free in time, or the read models are not "
    "ready (`busy`, `view_unavailable`; `Retry-After`)",
    504: "The views did not reach `min_position` in time (`view_timeout`)",
}
WITH_RETRY_AFTER = (409, 429, 503)


def error_statuses(endpoint: Endpoint) -> list[int]:
    """The refusals an operation can answer, from what it declares: a body can be
    malformed or too large; credentials can be missing (401) or the wrong kind (403); ids
    can name nothing of the caller's (404); writes can conflict (409); any input can be
    invalid (422); task creation is rate limited and worker routes spend credits (402);
    uploads have a quota (413/429); every route needs a database connection (503); reads
    wait for `min_position` (504). `endpoint.errors` adds any other."""
    takes_body = endpoint.body is not None or endpoint.multipart
    makes_tasks = creates(endpoint) == "task"
    found = set(endpoint.errors) | {503}
    if takes_body:
        found |= {400, 413}
    if endpoint.auth != "none":
        found |= {401, 403, 404}
    if endpoint.method != "GET":
        found |= {409, 422}
    if endpoint.body is not None or endpoint.query is not None or endpoint.path_params:
        found.add(422)
    if makes_tasks or endpoint.auth == "worker":
        found.add(402)
    if makes_tasks or endpoint.multipart:
        found.add(429)
    if endpoint.query is not None and issubclass(endpoint.query, m.Query):
        found.add(504)
    return sorted(found)

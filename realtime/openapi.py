"""The OpenAPI 3.1 document, built from the endpoints' own declarations.

Every route is listed with its request schema (the pydantic model that
validates it), its query and path parameters, its success schema and the
error answers it may give, so clients and the fuzzer see what the server
enforces.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from realtime import models as m
from realtime.api.base import POSITION_HEADER, Endpoint

REF = "#/components/schemas/{model}"
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
    makes_tasks = _creates(endpoint) == "task"
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


class _Schemas:
    """Collects component schemas; answers `$ref`s."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}
        self.requests: set[str] = set()  # what requests send: NUL is refused in them

    def ref(self, kind: Any, mode: str = "validation") -> dict[str, Any]:
        if kind is None:
            return {}
        schema = TypeAdapter(kind).json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        defs = schema.pop("$defs", {})
        self.components.update(defs)
        if mode == "validation":
            self.requests |= set(defs)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            self.components[kind.__name__] = schema
            if mode == "validation":
                self.requests.add(kind.__name__)
            return {"$ref": REF.format(model=kind.__name__)}
        return schema

    def finished(self) -> dict[str, Any]:
        """The components, request schemas as the edge enforces them (`no_nul`)."""
        return {
            name: no_nul(schema) if name in self.requests else schema
            for name, schema in self.components.items()
        }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        params.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": _inline(prop, schema.get("$defs", {})),
            }
        )
    return params


def _inline(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    if ref:
        return dict(defs[ref.rsplit("/", 1)[-1]])
    return prop


JSON_VALUE = {
    "description": "any JSON value without NUL in a string or key",
    "anyOf": [
        {"type": ["null", "boolean", "number"]},
        {"type": "string", "pattern": m.NO_NUL},
        {"type": "array", "items": {"$ref": REF.format(model="JsonValue")}},
        {
            "type": "object",
            "propertyNames": {"pattern": m.NO_NUL},
            "additionalProperties": {"$ref": REF.format(model="JsonValue")},
        },
    ],
}


def no_nul(schema: Any) -> Any:
    """The schema as the edge enforces it: no string and no object key the request keeps
    holds NUL (`base.validate`, `base.no_nul`), so a plain string gets `pattern` and a
    free-form object (`dict[str, Any]`) takes `JsonValue`s under keys without NUL."""
    if isinstance(schema, list):
        return [no_nul(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: no_nul(value) for key, value in schema.items()}
    if out.get("type") == "string" and not ({"pattern", "format", "enum", "const"} & set(out)):
        out["pattern"] = m.NO_NUL
    if out.get("type") == "object" and out.get("additionalProperties") is True:
        # a free-form object, or a model that keeps unknown fields (a family input); a
        # body's ignored fields (no `additionalProperties`) are dropped unread: anything goes
        out["propertyNames"] = {"pattern": m.NO_NUL}
        out["additionalProperties"] = {"$ref": REF.format(model="JsonValue")}
    return out


def _path_parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    # As `parse_path` reads them: ids are UUIDs, a task type's name is a plain string.
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"}
            if name.endswith("id")
            else {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\u0000/]+$"},
        }
        for name in endpoint.path_params
    ]


def _operation(endpoint: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(endpoint),
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": no_nul(
            _path_parameters(endpoint)
            + (_query_parameters(endpoint.query) if endpoint.query else [])
        ),
    }
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": not endpoint.body_optional,
            "content": {"application/json": {"schema": schemas.ref(endpoint.body)}},
        }
    if endpoint.multipart:
        op["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    success: dict[str, Any] = {"description": "OK"}
    if endpoint.response is not None:
        success["content"] = {
            "application/json": {"schema": schemas.ref(endpoint.response, "serialization")}
        }
    if endpoint.method != "GET":
        success["headers"] = {
            POSITION_HEADER: {
                "description": "global position of the last event written",
                "schema": {"type": "integer"},
            }
        }
    responses: dict[str, Any] = {str(endpoint.status): success}
    for status, kind in endpoint.other_statuses.items():
        responses[str(status)] = (
            {"description": "Nothing to do"}
            if kind is None
            else {
                "description": "OK",
                "content": {"application/json": {"schema": schemas.ref(kind, "serialization")}},
            }
        )
    error = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    for status in error_statuses(endpoint):
        answer: dict[str, Any] = {"description": ERRORS.get(status, "Refused"), "content": error}
        if status in WITH_RETRY_AFTER:
            answer["headers"] = RETRY_AFTER
        responses.setdefault(str(status), answer)
    if endpoint.auth != "none":
        op["security"] = [{"bearer": []}]
    op["responses"] = responses
    return op


def _singular(segment: str) -> str:
    return segment[:-1] if segment.endswith("s") else segment


def _creates(endpoint: Endpoint) -> str | None:
    """The kind of thing a create makes (its new id is `<kind>_id` in the answer): a POST
    answering 201 on a collection (`/api/shots` -> shot, `/api/generations/{id}/variants`
    -> variant), on `/<collection>/{id}/<verb>` (a duplicate: a shot), or a task creation."""
    if endpoint.method != "POST" or endpoint.status != 201:
        return None
    if endpoint.response is m.TaskCreated:
        return "task"
    parts = endpoint.path.strip("/").split("/")
    if parts[-1].startswith("{"):
        return None
    if parts[-1].endswith("s") or len(parts) < 3 or not parts[-2].startswith("{"):
        return _singular(parts[-1])
    return _singular(parts[-3])


def _link(create: Endpoint, kind: str, target: Endpoint) -> dict[str, Any] | None:
    """How `target` takes what `create` made: the path parameter after the kind's
    collection (or named `<kind>_id`), a query parameter or body field `<kind>_id` /
    `<kind>Id`; path parameters the two share come from the create's own request."""
    made = f"$response.body#/{kind}_id"
    names = {f"{kind}_id", f"{kind}Id"}
    parameters: dict[str, str] = {}
    parts = target.path.strip("/").split("/")
    for i, part in enumerate(parts):
        if not part.startswith("{"):
            continue
        name = part[1:-1]
        if not name.endswith("id"):
            continue
        if name in names or (i and _singular(parts[i - 1]) == kind):
            parameters[f"path.{name}"] = made
        elif name in create.path_params and create.path.startswith(
            target.path[: target.path.index(part)]
        ):
            parameters[f"path.{name}"] = f"$request.path.{name}"
    if target.query is not None:
        for name in target.query.model_json_schema(mode="validation").get("properties", {}):
            if name in names:
                parameters[f"query.{name}"] = made
    body: dict[str, str] = {}
    if target.body is not None:
        for name in target.body.model_json_schema(mode="validation").get("properties", {}):
            if name in names:
                body[name] = made
    if not any(value == made for value in [*parameters.values(), *body.values()]):
        return None
    link: dict[str, Any] = {"operationId": _operation_id(target)}
    if parameters:
        link["parameters"] = parameters
    if body:
        link["requestBody"] = body
    return link


def links(endpoints: list[Endpoint]) -> dict[str, dict[str, Any]]:
    """OpenAPI `links` from each create to every operation that takes what it made, by
    operationId of the create: project -> its shots, generations, tasks and reads;
    generation -> its variants, lineage, shot memberships; and so on."""
    found: dict[str, dict[str, Any]] = {}
    for create in endpoints:
        kind = _creates(create)
        if kind is None:
            continue
        for target in endpoints:
            if target is not create and (link := _link(create, kind, target)):
                found.setdefault(_operation_id(create), {})[_operation_id(target)] = link
    return found


def _operation_id(endpoint: Endpoint) -> str:
    return f"{endpoint.handler.__name__}_{endpoint.method.lower()}"


_STATUS = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
        }
    }
}
# The probes and metrics every role serves (realtime/health.py, realtime/metrics.py): no
# credentials, no input.
META: dict[str, Any] = {
    "/health/live": {
        "get": {
            "operationId": "health_live",
            "summary": "The process answers",
            "tags": ["meta"],
            "responses": {"200": {"description": "live", "content": _STATUS}},
        }
    },
    "/health/ready": {
        "get": {
            "operationId": "health_ready",
            "tags": ["meta"],
            "summary": "The database answers and the views are near the log's head",
            "responses": {
                "200": {"description": "ready", "content": _STATUS},
                "503": {"description": "not ready, with a `reason`", "content": _STATUS},
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "tags": ["meta"],
            "responses": {
                "200": {
                    "description": "the text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}


def openapi_document(endpoints: list[Endpoint]) -> dict[str, Any]:
    schemas = _Schemas()
    schemas.ref(m.Error, "serialization")
    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness and head position",
                "tags": ["meta"],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {"schema": schemas.ref(m.Health, "serialization")}
                        },
                    }
                },
            }
        },
        **META,
    }
    made = links(endpoints)
    for endpoint in endpoints:
        op = _operation(endpoint, schemas)
        if made.get(op["operationId"]):
            op["responses"][str(endpoint.status)]["links"] = made[op["operationId"]]
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = op
    for family in m.FAMILIES.values():  # TaskCreate's forms name them
        schemas.ref(family)
    components = schemas.finished()
    components["JsonValue"] = JSON_VALUE
    if "TaskCreate" in components:
        # the forms exclude each other (family const / null, task_type const / not-enum),
        # so anyOf says the same as oneOf and is far cheaper for a generator to satisfy
        components["TaskCreate"] = {
            **components["TaskCreate"],
            "anyOf": no_nul(m.task_create_forms()),
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Darkroom",
            "version": "0.1.0",
            "description": "The studio's HTTP API. Writes answer `X-Darkroom-Position`; "
            "every GET takes `?min_position=N` (read your writes).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a JWT (HS256, `sub` = user id), a personal access "
                    "token, or the service key",
                }
            },
        },
    }

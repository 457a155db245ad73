"""The OpenAPI 3.1 document, built from the endpoints' own declarations.

Every route is listed with its request schema (the pydantic model that
validates it), its query and path parameters, its success schema and the
error answers it may give (`realtime.openapi_errors`), and the links from each create
to what takes what it made (`realtime.openapi_links`), so clients and the fuzzer see
what the server enforces.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from realtime import models as m
from realtime.api.base import POSITION_HEADER, Endpoint
from realtime.openapi_errors import ERRORS, RETRY_AFTER, WITH_RETRY_AFTER, error_statuses
from realtime.openapi_links import links, operation_id

REF = "#/components/schemas/{model}"


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
        "operationId": operation_id(endpoint),
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

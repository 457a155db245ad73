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
ERRORS = {400: "Malformed JSON or a refused request", 401: "No or bad credentials",
          403: "Not allowed for this caller", 404: "Not found (or not yours)",
          409: "Conflict or refused transition", 413: "Body over the limit",
          422: "Invalid fields (with their paths)", 429: "Rate limited",
          504: "The views did not reach `min_position` in time"}


class _Schemas:
    """Collects component schemas; answers `$ref`s."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, kind: Any, mode: str = "validation") -> dict[str, Any]:
        if kind is None:
            return {}
        schema = TypeAdapter(kind).json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        self.components.update(schema.pop("$defs", {}))
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            self.components[kind.__name__] = schema
            return {"$ref": REF.format(model=kind.__name__)}
        return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        params.append({"name": name, "in": "query", "required": name in required,
                       "schema": _inline(prop, schema.get("$defs", {}))})
    return params


def _inline(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    if ref:
        return dict(defs[ref.rsplit("/", 1)[-1]])
    return prop


def _path_parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    # As `parse_path` reads them: ids are UUIDs, a task type's name is a plain string.
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "string", "format": "uuid"} if name.endswith("id")
             else {"type": "string", "minLength": 1, "maxLength": 100}}
            for name in endpoint.path_params]


def _operation(endpoint: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{endpoint.handler.__name__}_{endpoint.method.lower()}",
        "summary": endpoint.summary, "tags": [endpoint.tag],
        "parameters": _path_parameters(endpoint)
        + (_query_parameters(endpoint.query) if endpoint.query else []),
    }
    if endpoint.body is not None:
        op["requestBody"] = {"required": not endpoint.body_optional, "content": {
            "application/json": {"schema": schemas.ref(endpoint.body)}}}
    if endpoint.multipart:
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}}}}}}
    success: dict[str, Any] = {"description": "OK"}
    if endpoint.response is not None:
        success["content"] = {"application/json": {"schema": schemas.ref(
            endpoint.response, "serialization")}}
    if endpoint.method != "GET":
        success["headers"] = {POSITION_HEADER: {
            "description": "global position of the last event written",
            "schema": {"type": "integer"}}}
    responses: dict[str, Any] = {str(endpoint.status): success}
    for status, kind in endpoint.other_statuses.items():
        responses[str(status)] = {"description": "Nothing to do"} if kind is None else {
            "description": "OK", "content": {"application/json": {
                "schema": schemas.ref(kind, "serialization")}}}
    error = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    for status, text in ERRORS.items():
        responses.setdefault(str(status), {"description": text, "content": error})
    if endpoint.auth != "none":
        op["security"] = [{"bearer": []}]
    op["responses"] = responses
    return op


def openapi_document(endpoints: list[Endpoint]) -> dict[str, Any]:
    schemas = _Schemas()
    schemas.ref(m.Error, "serialization")
    paths: dict[str, Any] = {
        "/health": {"get": {"operationId": "health", "summary": "Liveness and head position",
                            "tags": ["meta"], "responses": {"200": {
                                "description": "OK", "content": {"application/json": {
                                    "schema": schemas.ref(m.Health, "serialization")}}}}}},
    }
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = \
            _operation(endpoint, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Darkroom", "version": "0.1.0",
                 "description": "The studio's HTTP API. Writes answer `X-Darkroom-Position`; "
                                "every GET takes `?min_position=N` (read your writes)."},
        "paths": paths,
        "components": {"schemas": schemas.components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a JWT (HS256, `sub` = user id), a personal access "
                                      "token, or the service key"}}},
    }

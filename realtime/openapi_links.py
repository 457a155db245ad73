"""OpenAPI `links` (realtime/openapi.py): from each create to every operation that
takes what it made, derived from paths and field names.
"""

from __future__ import annotations

from typing import Any

from realtime import models as m
from realtime.api.base import Endpoint


def _singular(segment: str) -> str:
    return segment[:-1] if segment.endswith("s") else segment


def creates(endpoint: Endpoint) -> str | None:
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
    link: dict[str, Any] = {"operationId": operation_id(target)}
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
        kind = creates(create)
        if kind is None:
            continue
        for target in endpoints:
            if target is not create and (link := _link(create, kind, target)):
                found.setdefault(operation_id(create), {})[operation_id(target)] = link
    return found


def operation_id(endpoint: Endpoint) -> str:
    return f"{endpoint.handler.__name__}_{endpoint.method.lower()}"

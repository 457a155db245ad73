"""What a task's params say about its place in an orchestrator run and the gallery.

The seed put orchestrator links at the top level of params or in the orchestrator's
details block (`orchestrator_details`); both are read here, and only here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from uuid import UUID

from domain.errors import InvalidParamsError


def _lookup(params: Mapping[str, Any], *keys: str) -> Any:
    # The seed put orchestrator links at the top level of params or in the
    # orchestrator's details block; the top level wins.
    details = params.get("orchestrator_details")
    nested = details if isinstance(details, Mapping) else {}
    for source in (params, nested):
        for key in keys:
            if source.get(key) not in (None, ""):
                return source[key]
    return None


def model_name_of(params: Mapping[str, Any]) -> str | None:
    """`params.model_name` → `params.orchestrator_details.model_name` → `params.model`."""
    details = params.get("orchestrator_details")
    nested = details if isinstance(details, Mapping) else {}
    for found in (params.get("model_name"), nested.get("model_name"), params.get("model")):
        if found:
            return str(found)
    return None


def as_uuid(value: Any, what: str) -> UUID | None:
    if value is None or isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidParamsError(f"{what} must be a UUID (got {value!r})") from None


def no_dependency(value: object) -> UUID:
    raise InvalidParamsError(f"dependant_on holds task ids (got {value!r})")


def _as_index(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParamsError(f"params.{key} must be a whole number ≥ 0 (got {value!r})")
    return value


@dataclass(frozen=True)
class Links:
    """What a task's params say about its place in an orchestrator run and the gallery."""

    orchestrator_task_id: UUID | None = None
    run_id: str | None = None
    segment_index: int | None = None
    join_index: int | None = None
    child_order: int | None = None
    parent_generation_id: UUID | None = None
    shot_id: UUID | None = None
    based_on: UUID | None = None

    @classmethod
    def held_by(cls, task: object) -> Links:
        """The links a task holds as its own attributes, of the same names."""
        return cls(**{f.name: getattr(task, f.name) for f in fields(cls)})

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Links:
        def uuid_at(*keys: str) -> UUID | None:
            return as_uuid(_lookup(params, *keys), f"params.{keys[0]}")

        def index_at(key: str) -> int | None:
            return _as_index(_lookup(params, key), key)

        run_id = _lookup(params, "orchestrator_run_id", "run_id")
        return cls(
            orchestrator_task_id=uuid_at("orchestrator_task_id_ref", "orchestrator_task_id"),
            run_id=None if run_id is None else str(run_id),
            segment_index=index_at("segment_index"),
            join_index=index_at("join_index"),
            child_order=index_at("child_order"),
            parent_generation_id=uuid_at("parent_generation_id"),
            shot_id=uuid_at("shot_id"),
            based_on=uuid_at("based_on"),
        )

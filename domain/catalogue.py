"""The task-type catalogue: what each kind of task is, where it runs and what it costs.

The defaults live in code (`DEFAULT_CATALOGUE`); the `TaskTypeCatalogue` aggregate
records only the changes made at run time (types registered or deactivated), so a
replay always starts from the current defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain import families
from domain.errors import UnknownTaskTypeError, ValidationError
from domain.tasktype import (
    API,
    BILLING_TYPES,
    CATEGORIES,
    GENERATION,
    GPU,
    IMAGE,
    MEDIA,
    ORCHESTRATION,
    PER_SECOND,
    PER_UNIT,
    PROCESSING,
    RUN_TYPES,
    SEED_DEFAULT_RATE,
    UTILITY,
    VIDEO,
    TaskType,
    as_decimal,
)

__all__ = [  # the task type's names, re-exported: the catalogue is where they are read
    "ALIASES",
    "API",
    "BILLING_TYPES",
    "CATALOGUE_ID",
    "CATEGORIES",
    "DEFAULT_CATALOGUE",
    "FAMILIES",
    "GENERATION",
    "GPU",
    "IMAGE",
    "MEDIA",
    "ORCHESTRATION",
    "PER_SECOND",
    "PER_UNIT",
    "PROCESSING",
    "RUN_TYPES",
    "SEED_DEFAULT_RATE",
    "UTILITY",
    "VIDEO",
    "TaskType",
    "TaskTypeCatalogue",
    "as_decimal",
    "resolve_default",
]

CATALOGUE_ID = uuid5(NAMESPACE_URL, "https://darkroom.studio/task-type-catalogue")

# The default rows: every registered task family's task types (domain/families), live.
DEFAULT_CATALOGUE: Mapping[str, TaskType] = families.DefaultRows()

# Other names the seed used for the same task types: seed 000's `video_travel_segment`
# (one segment between two chosen images) is the individual travel segment, and
# REFERENCE.md's `qwen_image_edit` the magic edit it names by its model.
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "animate_character": "character_animate",
        "video_travel_segment": "individual_travel_segment",
        "qwen_image_edit": "magic_edit",
    }
)

# The run families of unified task creation and the types each one queues
# (orchestrator, segment, stitch), from the registered families.
FAMILIES: Mapping[str, tuple[str, ...]] = families.RunRows()


def _active(name: str, found: TaskType | None) -> TaskType:
    if found is None:
        raise UnknownTaskTypeError(f"unknown task type {name!r}")
    if not found.is_active:
        raise UnknownTaskTypeError(f"task type {name!r} is not active")
    return found


def resolve_default(name: str) -> TaskType:
    """An active default task type, without a loaded catalogue."""
    return _active(name, DEFAULT_CATALOGUE.get(ALIASES.get(name, name)))


class TaskTypeCatalogue(Aggregate):
    """The one catalogue of the studio (id `CATALOGUE_ID`): defaults plus changes."""

    TOPIC = "darkroom.task_type_catalogue"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.task_type_catalogue.created"

    class Registered(Aggregate.Event):
        TOPIC = "darkroom.task_type_catalogue.registered"
        spec: dict[str, Any]

    class Deactivated(Aggregate.Event):
        TOPIC = "darkroom.task_type_catalogue.deactivated"
        name: str

    class Activated(Aggregate.Event):
        TOPIC = "darkroom.task_type_catalogue.activated"
        name: str

    @staticmethod
    def create_id() -> UUID:
        return CATALOGUE_ID

    @event(Created)
    def __init__(self) -> None:
        # The rows changed at run time; the defaults come from the registered families.
        self.types: dict[str, TaskType] = {}

    # -- queries -----------------------------------------------------------
    def get(self, name: str) -> TaskType | None:
        """The row for a name or alias, active or not."""
        key = ALIASES.get(name, name)
        return self.types.get(key) or DEFAULT_CATALOGUE.get(key)

    def resolve(self, name: str) -> TaskType:
        """The active type of that name; unknown and inactive types are refused."""
        return _active(name, self.get(name))

    def active(self) -> list[TaskType]:
        rows = {**DEFAULT_CATALOGUE, **self.types}
        return sorted((t for t in rows.values() if t.is_active), key=lambda t: t.name)

    # -- decisions ---------------------------------------------------------
    def register(self, task_type: TaskType) -> None:
        """Adds a type or replaces the row of that name (the last registration wins)."""
        if not isinstance(task_type, TaskType):
            raise ValidationError(f"register takes a TaskType (got {task_type!r})")
        if task_type.name in ALIASES:
            raise ValidationError(f"{task_type.name!r} is an alias of {ALIASES[task_type.name]!r}")
        if self.get(task_type.name) != task_type:
            self._registered(spec=task_type.as_dict())

    def deactivate(self, name: str) -> None:
        found = self._known(name)
        if found.is_active:
            self._deactivated(name=found.name)

    def activate(self, name: str) -> None:
        found = self._known(name)
        if not found.is_active:
            self._activated(name=found.name)

    def _known(self, name: str) -> TaskType:
        found = self.get(name)
        if found is None:
            raise UnknownTaskTypeError(f"unknown task type {name!r}")
        return found

    # -- state -------------------------------------------------------------
    @event(Registered)
    def _registered(self, spec: dict[str, Any]) -> None:
        self.types[spec["name"]] = TaskType.from_dict(spec)

    @event(Deactivated)
    def _deactivated(self, name: str) -> None:
        self.types[name] = replace(self._row(name), is_active=False)

    @event(Activated)
    def _activated(self, name: str) -> None:
        self.types[name] = replace(self._row(name), is_active=True)

    def _row(self, name: str) -> TaskType:
        return self.types.get(name) or DEFAULT_CATALOGUE[name]

"""What every task family shares: the typed input, the task specs it expands into,
the project facts it reads, and the rules several families use (seeds, sizes, batch
caps, one-value-per-item lists).

A family is one object (`Family`): its name, its input (a frozen dataclass of the
fields the family names; fields it does not name ride along in `extra` and are passed
on in the task params), its catalogue rows (task types with their pipeline, media and
inputs) and its expansion into tasks. The edge validates a request body into the input
(pydantic, in realtime/); the domain expands it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self
from uuid import UUID

from domain.errors import BatchTooLargeError, ListLengthsError, ValidationError
from domain.tasktype import VIDEO, TaskType, gpu_type

# Pipeline names (the key of model affinity: a worker holds the pipelines it runs).
TEXT_TO_IMAGE = "text_to_image"
IMAGE_TO_IMAGE = "image_to_image"
INPAINT = "inpaint"
UPSCALE = "upscale"
IMAGE_TO_VIDEO = "image_to_video"
PIPELINES = (TEXT_TO_IMAGE, IMAGE_TO_IMAGE, INPAINT, UPSCALE, IMAGE_TO_VIDEO)

MAX_BATCH = 100
# Output size per project aspect ratio, as the seed studio resolved it.
RESOLUTIONS: Mapping[str, str] = {
    "16:9": "902x508",
    "9:16": "508x902",
    "1:1": "670x670",
    "4:3": "768x576",
    "3:4": "576x768",
    "21:9": "1024x438",
    "3:2": "822x548",
    "2:3": "548x822",
}
# Seed 001's structure-video defaults (VACE mode), filled in when a path is sent.
STRUCTURE_DEFAULTS: Mapping[str, Any] = {
    "structure_video_treatment": "adjust",
    "structure_video_motion_strength": 1.0,
    "structure_video_type": "flow",
}
LIST_LENGTHS = "list_lengths"  # the error type of a refused length relation (docs/API.md)


@dataclass
class TaskSpec:
    """One task to queue: catalogue type, params, dependencies."""

    task_type: str
    params: dict[str, Any]
    dependant_on: list[UUID] = field(default_factory=list)


@dataclass(frozen=True)
class ProjectFacts:
    """What a family needs to know about the project it queues into."""

    aspect_ratio: str = "16:9"

    @property
    def resolution(self) -> str:
        return RESOLUTIONS.get(self.aspect_ratio, RESOLUTIONS["16:9"])


def pick_seed(seed: int | None, offset: int) -> int:
    if seed is None:
        return random.randint(0, 2**31 - 1)  # a generation seed, not a secret
    return (seed + offset) % 2**31


def expand(values: list[Any], count: int, what: str) -> list[Any]:
    """One value for all, or exactly one per item (the seed's expandArrayToCount)."""
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise ListLengthsError(what, len(values), count)
    return values


def check_batch(prompts: int, images_per_prompt: int) -> None:
    count = prompts * images_per_prompt
    if count > MAX_BATCH:
        raise BatchTooLargeError(count, MAX_BATCH)


@dataclass(frozen=True, kw_only=True)
class FamilyInput:
    """A family's input, as the edge validated it (ids and URLs as their JSON text).
    Fields the family does not name are kept in `extra` and passed on in the params."""

    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, data: Mapping[str, Any]) -> Self:
        """The input from validated JSON data: named fields, the rest into `extra`."""
        named = {f.name for f in fields(cls) if f.init and f.name != "extra"}
        extra = {k: v for k, v in data.items() if k not in named}
        return cls(extra=extra, **{k: v for k, v in data.items() if k in named})

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Every field that is set (declaration order), the extras, then `overrides`."""
        data = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "extra" and getattr(self, f.name) is not None
        }
        data.update(self.extra)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return data


@dataclass(frozen=True)
class Family:
    """One task family: its input, its catalogue rows and its expansion into tasks.

    `batch`: the request may queue several tasks (the answer lists `task_ids`).
    `run`: the family starts an orchestrated run (the studio spawns its segments and
    stitch) instead of expanding into tasks itself; `run_params` gives the run's params.
    `types`: the catalogue rows this family owns (its tasks' types, and the rows of the
    same kind it answers for, e.g. the models image generation can name).
    """

    name: str
    input: type[FamilyInput]
    types: tuple[TaskType, ...]
    expand: Callable[[Any, ProjectFacts], list[TaskSpec]] | None = None
    batch: bool = False
    run: bool = False
    run_params: Callable[[Any, ProjectFacts], dict[str, Any]] | None = None
    # For a run: the catalogue rows (orchestrator, segment, stitch).
    run_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.run == (self.expand is not None):
            raise ValidationError(f"family {self.name!r}: give `expand` or make it a `run`")

    def tasks(self, data: FamilyInput, project: ProjectFacts) -> list[TaskSpec]:
        if self.expand is None:
            raise TypeError(f"{self.name} starts a run: use run_params()")
        return self.expand(data, project)

    def parse(self, data: Mapping[str, Any]) -> FamilyInput:
        return self.input.from_params(data)


def one_task(task_type: str, params: dict[str, Any]) -> list[TaskSpec]:
    return [TaskSpec(task_type=task_type, params=params)]


def names(types: Iterable[TaskType]) -> tuple[str, ...]:
    return tuple(t.name for t in types)


def run_params(data: FamilyInput, project: ProjectFacts, inputs: Iterable[str]) -> dict[str, Any]:
    """Params of a run; its inputs (urls, generation ids) and shot travel beside them."""
    params = data.params(
        resolution=getattr(data, "resolution", None) or project.resolution,
        seed=pick_seed(getattr(data, "seed", None), 0),
    )
    for key in (*inputs, "shot_id"):
        params.pop(key, None)
    return params


def video_work(name: str, category: str, rate: str, **row: Any) -> TaskType:
    """A catalogue row of GPU video work that reports progress (segments, stitches);
    its variant type is its name unless given."""
    row.setdefault("variant_type", name)
    return gpu_type(name, category, rate, supports_progress=True, media=VIDEO, **row)

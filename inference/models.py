"""Which model each task type needs: the key of model affinity.

A backend is configured with `{model name: model id or local folder}`; the
dispatcher keeps one actor per model and sends each task to an actor holding
the model its type needs. Stitching tasks need no model (`None`): any worker
with PyAV can run them.

The table is derived from the domain's registered task families (each task type
names its pipeline), plus the seed's other names for them (catalogue aliases) and
the worker-side names no catalogue row has; it follows a family registered later.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from domain import families
from domain.catalogue import ALIASES
from domain.families.base import (
    IMAGE_TO_IMAGE,
    IMAGE_TO_VIDEO,
    INPAINT,
    PIPELINES,
    TEXT_TO_IMAGE,
    UPSCALE,
)
from inference.errors import UnsupportedTaskError

__all__ = [
    "IMAGE_TO_IMAGE",
    "IMAGE_TO_VIDEO",
    "INPAINT",
    "MODEL_NAMES",
    "TASK_MODELS",
    "TEXT_TO_IMAGE",
    "UPSCALE",
    "model_for",
]

MODEL_NAMES = PIPELINES
# Task types workers run under a name no catalogue row has.
WORKER_ONLY: Mapping[str, str | None] = {"image_edit": IMAGE_TO_IMAGE}


def task_models() -> dict[str, str | None]:
    """Task type → model name, for every type a worker runs."""
    found = families.pipelines()
    aliases = {alias: found[name] for alias, name in ALIASES.items() if name in found}
    return {**found, **WORKER_ONLY, **aliases}


class TaskModels(Mapping[str, str | None]):
    """`task_models()` as a mapping, read afresh on each use."""

    def __getitem__(self, task_type: str) -> str | None:
        return task_models()[task_type]

    def __iter__(self) -> Iterator[str]:
        return iter(task_models())

    def __len__(self) -> int:
        return len(task_models())


TASK_MODELS: Mapping[str, str | None] = TaskModels()


def model_for(task_type: str) -> str | None:
    """The model name a task type runs on, or None for media-only tasks."""
    try:
        return TASK_MODELS[task_type]
    except KeyError:
        raise UnsupportedTaskError(f"no backend runs task type {task_type!r}") from None

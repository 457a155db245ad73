"""Task families: the registry. A family is one module (its input, validation, expansion
into tasks and catalogue rows); registering it is all it takes for the studio to know
its task types. The tables other layers read (the catalogue's default rows, each task
type's pipeline, the params that name input files, the stitches, the video types) are
derived here from the registered families, never listed by hand.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from domain.errors import ValidationError
from domain.families.animate import CHARACTER_ANIMATE
from domain.families.base import Family
from domain.families.edits import ANNOTATED_IMAGE_EDIT, IMAGE_INPAINT, IMAGE_UPSCALE
from domain.families.images import EDIT_TRAVEL, IMAGE_GENERATION, MAGIC_EDIT
from domain.families.join import JOIN_CLIPS
from domain.families.travel import INDIVIDUAL_TRAVEL_SEGMENT, TRAVEL_BETWEEN_IMAGES
from domain.tasktype import VIDEO, TaskType

FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Adds a family (its name and task types must be new; its input files' params must
    not name another input already)."""
    if family.name in FAMILIES:
        raise ValidationError(f"family {family.name!r} is already registered")
    known = task_types()
    inputs = single_inputs()
    for row in family.types:
        if row.name in known:
            raise ValidationError(f"task type {row.name!r} already belongs to a family")
        for param, name in row.inputs.items():
            if inputs.get(param, name) != name:
                raise ValidationError(
                    f"{row.name}: param {param!r} is input {inputs[param]!r}, not {name!r}"
                )
    FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    FAMILIES.pop(name, None)


@contextmanager
def registered(family: Family) -> Iterator[Family]:
    """The family registered for the duration of the block (tests)."""
    register(family)
    try:
        yield family
    finally:
        unregister(family.name)


def task_types() -> dict[str, TaskType]:
    """Every registered family's catalogue rows, by name."""
    return {row.name: row for family in FAMILIES.values() for row in family.types}


def runs() -> dict[str, tuple[str, ...]]:
    """Run family → its (orchestrator, segment, stitch) task types."""
    return {f.name: f.run_types for f in FAMILIES.values() if f.run}


def pipelines() -> dict[str, str | None]:
    """Task type → the pipeline a worker runs it on (None: media only, e.g. a stitch),
    for every type a worker runs (not orchestrators)."""
    return {name: t.pipeline for name, t in task_types().items() if not t.is_orchestrator}


def single_inputs() -> dict[str, str]:
    """Param → input name, for the params that name one input file."""
    return {param: name for t in task_types().values() for param, name in t.inputs.items()}


def stitches() -> tuple[str, ...]:
    return tuple(name for name, t in task_types().items() if t.stitch)


def video_types() -> frozenset[str]:
    return frozenset(name for name, t in task_types().items() if t.media == VIDEO)


class DefaultRows(Mapping[str, TaskType]):
    """The catalogue's default rows: the registered families' task types, live."""

    def __getitem__(self, name: str) -> TaskType:
        return task_types()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(task_types())

    def __len__(self) -> int:
        return len(task_types())


for _family in (
    IMAGE_GENERATION,
    MAGIC_EDIT,
    IMAGE_INPAINT,
    ANNOTATED_IMAGE_EDIT,
    IMAGE_UPSCALE,
    CHARACTER_ANIMATE,
    JOIN_CLIPS,
    TRAVEL_BETWEEN_IMAGES,
    INDIVIDUAL_TRAVEL_SEGMENT,
    EDIT_TRAVEL,
):
    register(_family)


class RunRows(Mapping[str, tuple[str, ...]]):
    """Run family → (orchestrator, segment, stitch) task types, live."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return runs()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(runs())

    def __len__(self) -> int:
        return len(runs())

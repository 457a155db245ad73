"""A task family as a product would add it: this one module, and nothing else in
domain/ or realtime/ (its backend handler lives beside the other handlers).

`poster`: a headline printed `copies` times at a size; each copy is a task on the
text-to-image pipeline, each result a new generation.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import ValidationError
from domain.families.base import (
    TEXT_TO_IMAGE,
    Family,
    FamilyInput,
    ProjectFacts,
    TaskSpec,
    pick_seed,
)
from domain.tasktype import GENERATION, api_type

MAX_COPIES = 4


@dataclass(frozen=True, kw_only=True)
class PosterInput(FamilyInput):
    headline: str
    size: str = "64x48"
    copies: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.copies <= MAX_COPIES:
            raise ValidationError(f"copies must be 1 to {MAX_COPIES} (got {self.copies})")


def posters(data: PosterInput, project: ProjectFacts) -> list[TaskSpec]:
    params = data.params()
    params.pop("copies")
    return [
        TaskSpec(task_type="poster", params={**params, "seed": pick_seed(data.seed, copy)})
        for copy in range(data.copies)
    ]


POSTER = Family(
    "poster",
    PosterInput,
    (api_type("poster", GENERATION, "0.001", pipeline=TEXT_TO_IMAGE),),
    expand=posters,
    batch=True,
)

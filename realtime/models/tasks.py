"""Request bodies of tasks, workers, credits, tokens and the task-type catalogue."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from realtime.models.common import (
    Body,
    Json,
    Query,
    Stripped,
    Text,
    Url,
    WorkerId,
    alias,
)
from realtime.models.families import (
    FAMILIES,
    JoinClipsInput,
    RunInput,
    TravelBetweenImagesInput,
)
from realtime.models.family_base import FamilyName

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Seed 000 created orchestrators by type; here they start a run (segments, stitch).
RUN_TYPES: dict[str, type[RunInput]] = {
    "travel_orchestrator": TravelBetweenImagesInput,
    "join_clips_orchestrator": JoinClipsInput,
}
COMPONENT = "#/components/schemas/{}"


def _form(key: str, name: str, body: str, model: type[Any], other: str) -> dict[str, Any]:
    """One form of `TaskCreate`: `key` names `name`, `body` is `model`, `other` is null."""
    return {
        "required": [key, body],
        "properties": {
            key: {"const": name},
            body: {"$ref": COMPONENT.format(model.__name__)},
            other: {"type": "null"},
        },
    }


def task_create_forms() -> list[dict[str, Any]]:
    """`TaskCreate`'s forms for the OpenAPI document, whose components hold every family
    input (pydantic cannot write a `$ref` to another model into a schema): a family with
    that family's input; a run's task type with that run's params; any other task type
    with free params."""
    families = [
        _form("family", name, "input", model, "task_type") for name, model in FAMILIES.items()
    ]
    runs = [
        _form("task_type", name, "params", model, "family") for name, model in RUN_TYPES.items()
    ]
    other = {
        "required": ["task_type"],
        "properties": {
            "task_type": {"type": "string", "not": {"enum": list(RUN_TYPES)}},
            "family": {"type": "null"},
        },
    }
    return [*families, *runs, other]


class TaskCreate(Body):
    """Either form: `family` + `input`, or `task_type` + `params`."""

    family: FamilyName | None = None
    task_type: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))
    input: Json | None = None
    params: Json | None = None
    dependant_on: list[UUID] = Field(default_factory=list, max_length=100)
    idempotency_key: IdempotencyKey | None = None

    @model_validator(mode="after")
    def one_form(self) -> TaskCreate:
        if (self.family is None) == (self.task_type is None):
            raise ValueError("send either `family` with `input`, or `task_type` with `params`")
        if self.family is not None and self.input is None:
            raise ValueError(f"family {self.family!r} needs its `input` object")
        return self


class TravelRequest(TravelBetweenImagesInput):
    """`POST /api/steerable-motion/travel-between-images` (seed 000): the family input
    plus the project."""

    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))
    idempotency_key: IdempotencyKey | None = None


class TaskList(Query):
    project_id: UUID = Field(validation_alias=alias("projectId", "project_id"))
    status: Literal["Queued", "In Progress", "Complete", "Failed", "Cancelled"] | None = None


class TaskStatusChange(Body):
    status: Literal["Queued", "In Progress", "Complete", "Failed", "Cancelled"]
    error_message: Text | None = None
    worker_id: WorkerId | None = None
    output_location: Url | None = None


class CancelPending(Body):
    project_id: UUID = Field(validation_alias=alias("project_id", "projectId"))


# -- workers ------------------------------------------------------------------


class ClaimRequest(Body):
    worker_id: WorkerId
    run_type: Literal["gpu", "api"] = "gpu"
    current_model: str | None = Field(None, max_length=200)


class Heartbeat(Body):
    """`status`, `current_model` and VRAM are kept with the last heartbeat (not in the
    event log) for `GET /api/workers`; one left out keeps its last value."""

    worker_id: WorkerId
    status: str | None = Field(None, max_length=100)
    current_model: str | None = Field(None, max_length=200)
    vram_used_mb: int | None = Field(None, ge=0, le=10_000_000)
    vram_total_mb: int | None = Field(None, ge=0, le=10_000_000)
    task_ids: list[UUID] = Field(default_factory=list, max_length=100)
    exhaustive: bool = Field(
        False,
        description="`task_ids` is every task this worker holds: one it holds and leaves "
        "out, claimed at least 60 s ago (a claim whose answer was lost), goes back to the "
        "queue with one more attempt",
    )


class TaskComplete(Body):
    worker_id: WorkerId | None = Field(None, description="when given, must hold the task")
    output_location: Url
    thumbnail_url: Url | None = None
    result_data: Json | None = None


class TaskFail(Body):
    worker_id: WorkerId | None = Field(None, description="when given, must hold the task")
    error_message: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


class TaskRelease(Body):
    worker_id: WorkerId | None = Field(None, description="when given, must hold the task")
    reason: Annotated[str, Stripped(2_000, required=False)] | None = Field(
        None, description="why it is handed back (default: handed back)"
    )


# -- credits and tokens ---------------------------------------------------------
class CreditGrant(Body):
    user_id: Annotated[str, Stripped(200)]
    amount: float = Field(gt=0, le=1_000_000)
    reason: Annotated[str, Stripped(500)]

    @field_validator("amount")
    @classmethod
    def finite(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("amount must be a finite number")
        return value


class CreditTopUp(Body):
    user_id: Annotated[str, Stripped(200)]
    amount: float = Field(gt=0, le=1_000_000)
    reference: Annotated[str, Stripped(200)] = Field(
        description="the payment's external id: a reference seen before adds nothing"
    )

    @field_validator("amount")
    @classmethod
    def finite(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("amount must be a finite number")
        return value


# -- the task-type catalogue ------------------------------------------------------
TaskTypeName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
]


class TaskTypeSpec(Body):
    """A catalogue row to register (a row of that name is replaced: the last one wins)."""

    name: TaskTypeName
    run_type: Literal["gpu", "api"]
    category: Literal["generation", "processing", "orchestration", "utility"]
    billing_type: Literal["per_second", "per_unit"]
    base_cost_per_second: float = Field(0, ge=0, le=1_000_000)
    unit_cost: float = Field(0, ge=0, le=1_000_000)
    cost_factors: dict[str, Any] = Field(
        default_factory=dict,
        description=("`resolution` / `modelType` multipliers by param value, `frameCount` adder"),
    )
    variant_type: Annotated[str, StringConstraints(max_length=100)] | None = None
    is_active: bool = True
    supports_progress: bool = False
    display_name: Annotated[str, StringConstraints(max_length=200)] = ""
    model_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=2_000)] = ""

    @field_validator("base_cost_per_second", "unit_cost")
    @classmethod
    def finite_cost(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a cost must be a finite number")
        return value


class TokenCreate(Body):
    label: Annotated[str, Stripped(100)]

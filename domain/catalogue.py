"""The task-type catalogue: what each kind of task is, where it runs and what it costs.

The defaults live in code (`DEFAULT_CATALOGUE`); the `TaskTypeCatalogue` aggregate
records only the changes made at run time (types registered or deactivated), so a
replay always starts from the current defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import UnknownTaskTypeError, ValidationError

GPU = "gpu"
API = "api"
RUN_TYPES = (GPU, API)

GENERATION = "generation"
PROCESSING = "processing"
ORCHESTRATION = "orchestration"
UTILITY = "utility"
CATEGORIES = (GENERATION, PROCESSING, ORCHESTRATION, UTILITY)

PER_SECOND = "per_second"
PER_UNIT = "per_unit"
BILLING_TYPES = (PER_SECOND, PER_UNIT)

# The seed charged this per second for a task type it had no row for.
SEED_DEFAULT_RATE = Decimal("0.0278")

CATALOGUE_ID = uuid5(NAMESPACE_URL, "https://darkroom.studio/task-type-catalogue")


def as_decimal(value: object, what: str) -> Decimal:
    """A money amount from an int, float, str or Decimal (floats via their shortest repr)."""
    if isinstance(value, bool):
        raise ValidationError(f"{what} must be a number (got {value!r})")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError:
        raise ValidationError(f"{what} must be a number (got {value!r})") from None
    if not number.is_finite():
        raise ValidationError(f"{what} must be a finite number (got {value!r})")
    return number


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValidationError(f"{what} must be one of {', '.join(allowed)} (got {value!r})")
    return value


@dataclass(frozen=True)
class TaskType:
    """One row of the catalogue. `cost_factors` may hold `resolution` and `modelType`
    multipliers (by `params.resolution` / `params.model_type`) and a `frameCount` adder."""

    name: str
    run_type: str
    category: str
    billing_type: str
    base_cost_per_second: Decimal = Decimal(0)
    unit_cost: Decimal = Decimal(0)
    cost_factors: Mapping[str, Any] = field(default_factory=dict, hash=False)
    variant_type: str | None = None
    is_active: bool = True
    supports_progress: bool = False
    display_name: str = ""
    model_name: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError(f"a task type needs a name (got {self.name!r})")
        _one_of(self.run_type, RUN_TYPES, f"run_type of {self.name}")
        _one_of(self.category, CATEGORIES, f"category of {self.name}")
        _one_of(self.billing_type, BILLING_TYPES, f"billing_type of {self.name}")
        for attr in ("base_cost_per_second", "unit_cost"):
            amount = as_decimal(getattr(self, attr), f"{attr} of {self.name}")
            if amount < 0:
                raise ValidationError(f"{attr} of {self.name} must be ≥ 0 (got {amount})")
            object.__setattr__(self, attr, amount)
        if not isinstance(self.cost_factors, Mapping):
            raise ValidationError(
                f"cost_factors of {self.name} must be a mapping (got {self.cost_factors!r})"
            )
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name.replace("_", " ").capitalize())

    @property
    def is_orchestrator(self) -> bool:
        return self.category == ORCHESTRATION

    def as_dict(self) -> dict[str, Any]:
        spec = asdict(self)
        spec["cost_factors"] = dict(self.cost_factors)
        return spec

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> TaskType:
        return cls(**spec)


def _gpu(name: str, category: str, rate: str, **kw: Any) -> TaskType:
    return TaskType(name, GPU, category, PER_SECOND, base_cost_per_second=Decimal(rate), **kw)


def _api(name: str, category: str, unit: str, **kw: Any) -> TaskType:
    return TaskType(name, API, category, PER_UNIT, unit_cost=Decimal(unit), **kw)


_DEFAULTS = (
    _api("image_generation", GENERATION, "0.039", display_name="Image generation"),
    _api("qwen_image", GENERATION, "0.039", model_name="qwen_image"),
    _api("z_image_turbo", GENERATION, "0.0065", model_name="z_image_turbo"),
    # The seed has no published rate for magic edit; priced like its qwen sibling.
    _api(
        "magic_edit", GENERATION, "0.039", variant_type="magic_edit", model_name="qwen_image_edit"
    ),
    _api("image_inpaint", PROCESSING, "0.0020", variant_type="inpaint"),
    _api("annotated_image_edit", PROCESSING, "0.0020", variant_type="annotated_edit"),
    _api("image_upscale", PROCESSING, "0.0015", variant_type="upscaled"),
    _api("character_animate", GENERATION, "0.20", display_name="Animate character"),
    _gpu("travel_orchestrator", ORCHESTRATION, "0.0278", display_name="Travel between images"),
    _gpu(
        "travel_segment",
        PROCESSING,
        "0.0278",
        variant_type="travel_segment",
        supports_progress=True,
    ),
    # No rate was published for the stitch; the seed's per-second fallback applies.
    _gpu(
        "travel_stitch",
        PROCESSING,
        str(SEED_DEFAULT_RATE),
        variant_type="travel_stitch",
        supports_progress=True,
    ),
    _gpu(
        "individual_travel_segment",
        GENERATION,
        "0.0278",
        variant_type="individual_segment",
        supports_progress=True,
    ),
    _gpu("join_clips_orchestrator", ORCHESTRATION, "0.0278", display_name="Join clips"),
    _gpu(
        "join_clips_segment",
        PROCESSING,
        "0.0278",
        variant_type="join_clips_segment",
        supports_progress=True,
    ),
    _gpu(
        "join_final_stitch",
        GENERATION,
        "0.005",
        variant_type="join_final_stitch",
        supports_progress=True,
    ),
    # Seed 000's Edit Travel tool: an input image edited by text prompts (Fal's
    # flux-pro/kontext, or Flux), each result a new generation. No rate was published:
    # priced like the other prompt edits (magic_edit).
    _api(
        "edit_travel_kontext",
        GENERATION,
        "0.039",
        display_name="Edit travel (Kontext)",
        model_name="flux_kontext",
    ),
    _api(
        "edit_travel_flux",
        GENERATION,
        "0.039",
        display_name="Edit travel (Flux)",
        model_name="flux",
    ),
)

DEFAULT_CATALOGUE: Mapping[str, TaskType] = MappingProxyType({t.name: t for t in _DEFAULTS})

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

# The task families of unified task creation and the types each one queues.
FAMILIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "travel_between_images": ("travel_orchestrator", "travel_segment", "travel_stitch"),
        "join_clips": ("join_clips_orchestrator", "join_clips_segment", "join_final_stitch"),
    }
)


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
        self.types: dict[str, TaskType] = dict(DEFAULT_CATALOGUE)

    # -- queries -----------------------------------------------------------
    def get(self, name: str) -> TaskType | None:
        """The row for a name or alias, active or not."""
        return self.types.get(ALIASES.get(name, name))

    def resolve(self, name: str) -> TaskType:
        """The active type of that name; unknown and inactive types are refused."""
        return _active(name, self.get(name))

    def active(self) -> list[TaskType]:
        return sorted((t for t in self.types.values() if t.is_active), key=lambda t: t.name)

    # -- decisions ---------------------------------------------------------
    def register(self, task_type: TaskType) -> None:
        """Adds a type or replaces the row of that name (the last registration wins)."""
        if not isinstance(task_type, TaskType):
            raise ValidationError(f"register takes a TaskType (got {task_type!r})")
        if task_type.name in ALIASES:
            raise ValidationError(f"{task_type.name!r} is an alias of {ALIASES[task_type.name]!r}")
        if self.types.get(task_type.name) != task_type:
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
        self.types[name] = replace(self.types[name], is_active=False)

    @event(Activated)
    def _activated(self, name: str) -> None:
        self.types[name] = replace(self.types[name], is_active=True)

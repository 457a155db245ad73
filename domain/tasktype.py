"""A task type: one row of the catalogue, and what running it takes.

Beside the row's catalogue data (run type, category, prices, variant type) a task type
says what the workers need to know: the pipeline it runs on (`pipeline`, the key of
model affinity; None for media-only work such as stitching), the media it makes
(`media`), the params that name its input files (`inputs`: param → input name) and
whether it stitches the outputs of other tasks (`stitch`). Those four come from the
code (a task family's module), not from the catalogue's events: they are left out of
`as_dict` and of equality, so a row registered at run time keeps its catalogue meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any

from domain.errors import ValidationError

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

IMAGE = "image"
VIDEO = "video"
MEDIA = (IMAGE, VIDEO)
WORKER_FIELDS = ("pipeline", "media", "inputs", "stitch")

# The seed charged this per second for a task type it had no row for.
SEED_DEFAULT_RATE = Decimal("0.0278")


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
    # What the workers need (from the code, not the catalogue's events; see above).
    pipeline: str | None = field(default=None, compare=False)
    media: str = field(default="image", compare=False)
    inputs: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    stitch: bool = field(default=False, compare=False)

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
        _one_of(self.media, MEDIA, f"media of {self.name}")
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name.replace("_", " ").capitalize())

    @property
    def is_orchestrator(self) -> bool:
        return self.category == ORCHESTRATION

    def as_dict(self) -> dict[str, Any]:
        """The catalogue row (what a `Registered` event and the API carry)."""
        spec = asdict(replace(self, cost_factors={}, inputs={}))
        spec["cost_factors"] = dict(self.cost_factors)
        for key in WORKER_FIELDS:
            del spec[key]
        return spec

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> TaskType:
        return cls(**spec)


def gpu_type(name: str, category: str, rate: str, **kw: Any) -> TaskType:
    return TaskType(name, GPU, category, PER_SECOND, base_cost_per_second=Decimal(rate), **kw)


def api_type(name: str, category: str, unit: str, **kw: Any) -> TaskType:
    return TaskType(name, API, category, PER_UNIT, unit_cost=Decimal(unit), **kw)

"""What every family's wire model shares: the base model (mapped onto the domain
family's input), the domain's rules as field errors, the family name read from the
registry, and a wire model made from a domain input for a family that has no written one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError, core_schema

from domain import families
from domain.errors import ListLengthsError, ValidationError
from domain.families.base import LIST_LENGTHS, Family, ProjectFacts, TaskSpec
from domain.families.base import FamilyInput as DomainInput

__all__ = ["LIST_LENGTHS", "ProjectFacts", "TaskSpec"]


class FamilyInput(BaseModel):
    """A family's input on the wire, validated into the domain family's input (fields
    the model does not name are kept and passed on in the task params)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    family: ClassVar[str]

    @classmethod
    def domain(cls) -> Family:
        return families.FAMILIES[cls.family]

    @model_validator(mode="after")
    def holds_the_family_rules(self) -> FamilyInput:
        """The domain input's own checks, as field errors (a generated model has no
        validators of its own; a written one has already said the same)."""
        self.to_domain()
        return self

    def to_domain(self) -> DomainInput:
        data = self.model_dump(mode="json", exclude_none=True, by_alias=False)
        with domain_rules():
            return self.domain().parse(data)

    def to_tasks(self, project: ProjectFacts) -> list[TaskSpec]:
        return self.domain().tasks(self.to_domain(), project)


def generated(family: Family) -> type[FamilyInput]:
    """A wire model with the fields of the family's domain input (same types and
    defaults; fields it does not name are kept, as for every family)."""
    hints = get_type_hints(family.input)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(family.input):
        if f.name == "extra":
            continue
        if f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
        elif f.default is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], f.default)
        else:
            fields[f.name] = (hints[f.name], ...)
    title = "".join(part.capitalize() for part in family.name.split("_")) + "Input"
    model = create_model(title, __base__=FamilyInput, **fields)
    model.family = family.name
    return model


@dataclass(frozen=True)
class RegisteredFamily:
    """A family name: one of the registered families (read at validation time, so a
    family registered later is known), refused like a `Literal` otherwise."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {"enum": list(families.FAMILIES), "type": "string"}

    def check(self, value: Any) -> str:
        if isinstance(value, str) and value in families.FAMILIES:
            return value
        names = [repr(name) for name in families.FAMILIES]
        expected = " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": expected}
        )


FamilyName = Annotated[str, RegisteredFamily()]


@contextmanager
def domain_rules() -> Iterator[None]:
    """A domain family's rule, broken in a validator, as a field error (422): a length
    relation between lists as `list_lengths` (no JSON Schema says it), any other as the
    validator's value error."""
    try:
        yield
    except ListLengthsError as error:
        raise PydanticCustomError(
            LIST_LENGTHS,
            "{what} has {n} items; give 1 or {count}",
            {"what": error.what, "n": error.n, "count": error.count},
        ) from None
    except ValidationError as error:
        raise ValueError(str(error)) from None

"""The wire models' building blocks: string forms, request bases, small helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, core_schema

# A string no byte of which is NUL (PostgreSQL text and jsonb cannot store it; the edge
# refuses it in any body or query value), and one that also has a non-space character.
NO_NUL = "^[^\\u0000]*$"
NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"


@dataclass(frozen=True)
class Stripped:
    """A string that is stripped of surrounding whitespace, its length limits holding as
    sent (a label of 101 characters is refused even if it strips to 100); a required one
    must hold a non-space character. The schema says the same (`pattern`)."""

    max_length: int
    required: bool = True

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return core_schema.no_info_after_validator_function(
            self.strip,
            core_schema.str_schema(
                min_length=1 if self.required else 0, max_length=self.max_length
            ),
        )

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {
            "type": "string",
            "minLength": 1 if self.required else 0,
            "maxLength": self.max_length,
            "pattern": NOT_BLANK if self.required else NO_NUL,
        }

    def strip(self, value: str) -> str:
        stripped = value.strip()
        if self.required and not stripped:
            raise PydanticCustomError("blank", "must hold a non-space character")
        return stripped


Name = Annotated[str, Stripped(200)]
Text = Annotated[str, StringConstraints(max_length=20_000)]
Url = Annotated[str, Stripped(4096)]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
Resolution = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")]
Json = dict[str, Any]
# A page cursor as the views issue it (unpadded urlsafe base64 of a JSON pair): its form
# is checked here, what it holds by the view (422 `invalid_cursor`); empty is no cursor.
Cursor = Annotated[str, StringConstraints(max_length=500, pattern=r"^[A-Za-z0-9_-]*$")]
WorkerId = Annotated[str, Stripped(200)]

# The ratios a project or shot may take (domain.project.ASPECT_RATIOS).
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "3:2", "2:3"]


def alias(*names: str) -> Any:
    return AliasChoices(*names)


# A field that may be left out but not sent as null (the schema says boolean).
BOOLEAN = WithJsonSchema({"type": "boolean"})


def one_of_sent(*fields: str, kinds: dict[str, str] | None = None) -> dict[str, Any]:
    """`json_schema_extra` for "send at least one of these" (not null, when `kinds` names
    the field's JSON type)."""
    return {
        "anyOf": [
            {
                "required": [name],
                **(
                    {"properties": {name: {"type": kinds[name]}}} if kinds and name in kinds else {}
                ),
            }
            for name in fields
        ]
    }


class Body(BaseModel):
    """A request body: unknown fields are ignored, so older and newer clients both work."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    min_position: int | None = Field(
        None, ge=0, le=2**62, description="answer once the view has reached this"
    )

"""What a command verb returns: a small frozen dataclass of the ids it wrote and its position.

How to give a verb a typed result (the how-to):

1. Find or declare its shape here: a frozen, slotted, keyword-only subclass of `Written`
   whose fields are what the verb's JSON answer holds, typed (`UUID` for ids, `Decimal`
   for amounts, `tuple[UUID, ...]` for lists of ids). One class per *shape*: verbs with
   the same answer share it (`ShotWritten` for create, update, delete, duplicate...).
   A field the answer leaves out when it is None is
   `field(default=None, metadata=OMIT_NONE)`. It declares `STORED_AS`, the tag its
   stored results carry (its name when it was made; kept if the class is renamed,
   unique: a second class with it is refused when it is made).
2. In the verb, `decide()` returns `(aggregates, ShotWritten(shot_id=shot.id))` and is
   annotated `-> Decision[ShotWritten]`; the verb returns `self._command(meta, decide)`,
   typed `-> ShotWritten`. `_command` stamps `position` (and `replayed` on a replay).
3. At the edge, `written(result)` sends `result.as_json()`: the same JSON as before
   (ids as strings, amounts as strings, field order, `position`, `replayed` only when
   true). Callers read `result.shot_id`, a `UUID`.

Reading a result as its JSON mapping (`result["shot_id"]`, the id as a string) still
works, for the callers written before results were typed; new code reads attributes. A
subclass is declared with `eq=False` so that equality stays the JSON answer's (a test
compares a replay with `{**first, "replayed": True}`).

Idempotent replays: `_command` stores `stored()` (the fields plus the class's
`STORED_AS` under `TAG`) with the command; a replay rebuilds the class with that tag
(`rebuild()`). A tag no class carries (a shape removed, or one a newer process knows) is
answered as it was stored (`AsStored`), never guessed from its keys. A row stored before
tags (a plain dict; rows live 24 h) is rebuilt as the class whose fields match its keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, TypeVar, Union
from uuid import UUID

TAG = "__written__"
OMIT_NONE = {"omit_none": True}  # a field left out of the JSON answer when None
NOT_ANSWERED = {"answered": False}  # stored for a replay, never in the JSON answer
_BOOKKEEPING = ("position", "replayed")

W = TypeVar("W", bound="Written")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Written(Mapping[str, object]):
    """A command's outcome: `position` is the log position it wrote up to (-1: not yet
    saved, while `decide()` builds it); `replayed` marks an idempotent replay."""

    # Each shape by its `STORED_AS` tag.
    registry: ClassVar[dict[str, type[Written]]] = {}
    # The tag its stored results carry: declared by every shape, stable, unique.
    STORED_AS: ClassVar[str]
    # Fields the JSON answer puts after `position` (added to the result after the save).
    AFTER_POSITION: ClassVar[tuple[str, ...]] = ()

    position: int = -1
    replayed: bool = False

    def __init_subclass__(cls) -> None:
        # No `super()` here: `slots=True` rebuilds the class, which breaks its cell.
        # That second class object (same module and name) replaces the first.
        tag = cls.__dict__.get("STORED_AS")
        if not isinstance(tag, str):
            msg = f"{cls.__qualname__} must declare STORED_AS: the tag its results are stored under"
            raise TypeError(msg)
        if not tag:  # never stored (`AsStored`)
            return
        known = Written.registry.get(tag)
        if known is not None and _where(known) != _where(cls):
            msg = f"STORED_AS {tag!r} of {_where(cls)} is already {_where(known)}'s"
            raise TypeError(msg)
        Written.registry[tag] = cls

    def as_json(self) -> dict[str, Any]:
        """The JSON answer: the fields in order, then `position`, `replayed` if true."""
        body = self._fields_json(self.AFTER_POSITION, answer=True)
        body["position"] = self.position
        if self.replayed:
            body["replayed"] = True
        body.update(self._fields_json((), only=self.AFTER_POSITION, answer=True))
        return body

    def fields_json(self) -> dict[str, Any]:
        """The answer's fields alone (no `position`, no `replayed`): a part of another
        command's answer (`complete_and_claim`'s `claimed`)."""
        return self._fields_json((), answer=True)

    def stored(self) -> dict[str, Any]:
        """What an idempotency key stores: the fields and the class's tag."""
        return {**self._fields_json(()), TAG: self.STORED_AS}

    def __getitem__(self, key: str) -> object:
        return self.as_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_json())

    def __len__(self) -> int:
        return len(self.as_json())

    def _fields_json(
        self, skip: tuple[str, ...], only: tuple[str, ...] | None = None, answer: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if (
                f.name in _BOOKKEEPING
                or f.name in skip
                or (only is not None and f.name not in only)
            ):
                continue
            value = getattr(self, f.name)
            if answer and f.metadata.get("answered") is False:
                continue
            if value is None and f.metadata.get("omit_none"):
                continue
            body[f.name] = to_json(value)
        return body

    @staticmethod
    def rebuild(stored: Mapping[str, Any], *, position: int, replayed: bool = True) -> Written:
        """The `Written` a stored record holds: its tag's class; `AsStored` for a tag no
        class carries; the class whose fields match a plain dict stored before tags."""
        values = {k: v for k, v in stored.items() if k not in (TAG, *_BOOKKEEPING)}
        if TAG in stored:
            found = Written.registry.get(stored[TAG]) if isinstance(stored[TAG], str) else None
            if found is None:
                return AsStored(
                    stored_fields=values,
                    stored_as=str(stored[TAG]),
                    position=position,
                    replayed=replayed,
                )
            cls = found
        else:
            cls = _matching(frozenset(values))
        hints = _hints(cls)
        parsed = {name: from_json(hints[name], value) for name, value in values.items()}
        return cls(**parsed, position=position, replayed=replayed)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class AsStored(Written):
    """A replay of a result stored under a tag no shape carries: its stored values
    answered as they were, under `position` and `replayed`."""

    STORED_AS = ""  # not a shape: never registered, never matched

    stored_fields: dict[str, Any]
    stored_as: str

    def as_json(self) -> dict[str, Any]:
        body = {**self.stored_fields, "position": self.position}
        if self.replayed:
            body["replayed"] = True
        return body

    def fields_json(self) -> dict[str, Any]:
        return dict(self.stored_fields)

    def stored(self) -> dict[str, Any]:
        return {**self.stored_fields, TAG: self.stored_as}


def _matching(keys: frozenset[str]) -> type[Written]:
    """The registered class whose fields are exactly `keys`, optional fields aside; the
    one with the fewest fields when several fit."""
    fits = []
    for cls in Written.registry.values():
        names = {f.name for f in dataclasses.fields(cls) if f.name not in _BOOKKEEPING}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _BOOKKEEPING
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        }
        if required <= keys <= names:
            fits.append((len(names), cls.__name__, cls))
    if not fits:
        msg = f"no Written class has the fields {sorted(keys)}"
        raise LookupError(msg)
    return min(fits)[2]


_HINTS: dict[type[Written], dict[str, Any]] = {}


def _hints(cls: type[Written]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def to_json(value: object) -> object:
    """A field's value as JSON: ids and amounts as strings, sequences as lists."""
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(kind: Any, value: object) -> Any:
    """A stored JSON value as the field's type (the inverse of `to_json`)."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return from_json(options[0], value) if len(options) == 1 else value
    if kind is UUID or kind is Decimal:
        return kind(str(value))
    if origin is tuple and isinstance(value, list):
        return tuple(from_json(typing.get_args(kind)[0], v) for v in value)
    if origin is list and isinstance(value, list):
        return [from_json(typing.get_args(kind)[0], v) for v in value]
    return value


def parsed(cls: type[W], fields: Mapping[str, object]) -> W:
    """A `cls` made from its JSON fields (ids as strings, amounts as strings)."""
    hints = _hints(cls)
    return cls(**{name: from_json(hints[name], value) for name, value in fields.items()})


# -- the answers' shapes, one class per shape -------------------------------------------
# Each is `@dataclass(frozen=True, slots=True, kw_only=True, eq=False)`: see the how-to.


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ProjectWritten(Written):
    STORED_AS = "ProjectWritten"

    project_id: UUID


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ShotWritten(Written):
    STORED_AS = "ShotWritten"

    shot_id: UUID
    shot_generation_id: UUID | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ShotMemberAdded(Written):
    STORED_AS = "ShotMemberAdded"

    shot_id: UUID
    shot_generation_id: UUID
    timeline_frame: int | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ShotMemberMoved(Written):
    STORED_AS = "ShotMemberMoved"

    shot_id: UUID
    shot_generation_id: UUID
    generation_id: UUID
    timeline_frame: int | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ShotsOrdered(Written):
    STORED_AS = "ShotsOrdered"

    project_id: UUID
    shot_ids: tuple[UUID, ...]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class GenerationWritten(Written):
    STORED_AS = "GenerationWritten"

    generation_id: UUID


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class VariantWritten(Written):
    STORED_AS = "VariantWritten"

    generation_id: UUID
    variant_id: UUID
    shot_generation_id: UUID | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class VariantUpdated(Written):
    STORED_AS = "VariantUpdated"

    generation_id: UUID
    variant_id: UUID
    viewed: bool
    starred: bool
    name: str | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ResourceWritten(Written):
    STORED_AS = "ResourceWritten"

    id: UUID


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ResourceDeleted(Written):
    """`location` is the stored file the edge removes (None for a URL): not answered."""

    STORED_AS = "ResourceDeleted"

    id: UUID
    location: str | None = field(default=None, metadata=NOT_ANSWERED)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class UserWritten(Written):
    STORED_AS = "UserWritten"

    user_id: str
    created: bool


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CreditsGranted(Written):
    STORED_AS = "CreditsGranted"

    user_id: str
    balance: Decimal


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CreditsToppedUp(Written):
    STORED_AS = "CreditsToppedUp"

    user_id: str
    reference: str
    added: bool
    balance: Decimal


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TokenIssued(Written):
    """The plain `token` is in the first answer only: never stored, not in a replay."""

    STORED_AS = "TokenIssued"
    AFTER_POSITION = ("token",)

    token_id: UUID
    label: str
    token: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TokenRevoked(Written):
    STORED_AS = "TokenRevoked"

    token_id: UUID


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TaskTypeWritten(Written):
    STORED_AS = "TaskTypeWritten"

    task_type: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PendingCancelled(Written):
    """`changed`: every task whose status the command changed (by id), its new status."""

    STORED_AS = "PendingCancelled"

    project_id: UUID
    changed: dict[str, str]
    cancelled: int

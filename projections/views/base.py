"""What every view shares: the handler registry, the per-event context, row helpers.

A view is a model (in-memory logic plus a write-back cache of its own rows)
and a set of versioned tables. The runner hands it each event with the event's
aggregate folded to just after the event; the view renders the rows that
event changed, emits them to the change log (`ctx.emit`) and keeps them as
pending until the runner flushes the batch. A view may read its own committed
rows (a cache miss after a restart) but never another view's: each version of
each view can be rebuilt on its own.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from uuid import UUID

if TYPE_CHECKING:
    import psycopg

    from projections.engine.aggregates import AggregateCache
    from projections.engine.writes import Op

K = TypeVar("K")
V = TypeVar("V")
Row = dict[str, Any]
Handler = Callable[..., None]
C = TypeVar("C", bound=Callable[..., Any])


def handles(*event_classes: type) -> Callable[[Handler], Handler]:
    """Mark a view method as the handler of these event classes."""

    def mark(method: Handler) -> Handler:
        method._handles = event_classes  # type: ignore[attr-defined]
        return method

    return mark


def captures(*event_classes: type) -> Callable[[C], C]:
    """Mark a view method that reads the aggregate *before* these events are applied."""

    def mark(method: C) -> C:
        method._captures = event_classes  # type: ignore[attr-defined]
        return method

    return mark


class Context:
    """What a handler may use besides the event: position, aggregates, the change log."""

    __slots__ = ("aggregates", "changes", "position", "timestamp")

    def __init__(self, aggregates: AggregateCache) -> None:
        self.aggregates = aggregates
        self.position = 0
        self.timestamp: datetime | None = None
        self.changes: dict[str, list[tuple[str, Row]]] = {}

    def emit(self, topic: str, kind: str, data: Row) -> None:
        found = self.changes.get(topic)
        if found is None:
            self.changes[topic] = [(kind, data)]
        else:
            found.append((kind, data))


class View:
    """Base class of the read models. Subclasses set `name`, `tables`, `ddl()`."""

    name: ClassVar[str] = ""
    tables: ClassVar[tuple[str, ...]] = ()
    _dispatch: ClassVar[dict[type, str]] = {}
    _capture: ClassVar[dict[type, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dispatch: dict[type, str] = {}
        capture: dict[type, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for event_class in getattr(value, "_handles", ()):
                    dispatch[event_class] = attr
                for event_class in getattr(value, "_captures", ()):
                    capture[event_class] = attr
        cls._dispatch = dispatch
        cls._capture = capture

    def __init__(self) -> None:
        self.reader: psycopg.Connection[Any] | None = None
        self.names: dict[str, str] = {}
        # Keys of rows created in the current batch: written by COPY, not upsert.
        self.new: set[Any] = set()

    def forget_new(self) -> None:
        """Write every pending row as an upsert (the target may already hold them)."""
        self.new = set()

    # -- wiring (runner) -------------------------------------------------
    @classmethod
    def event_classes(cls) -> frozenset[type]:
        return frozenset(cls._dispatch)

    def bind(self, reader: psycopg.Connection[Any], names: dict[str, str]) -> None:
        """Where cache misses read this view's committed rows."""
        self.reader = reader
        self.names = names

    def capture(self, event: Any, before: Any) -> Any:
        method = self._capture.get(type(event))
        return None if method is None else getattr(self, method)(event, before)

    def handle(self, event: Any, aggregate: Any, captured: Any, ctx: Context) -> None:
        method = self._dispatch.get(type(event))
        if method is not None:
            getattr(self, method)(event, aggregate, captured, ctx)

    # -- to implement ----------------------------------------------------
    def ddl(self, names: dict[str, str]) -> list[str]:
        raise NotImplementedError

    def refresh(self, event: Any, ctx: Context) -> None:
        """Re-render from current state whatever `event` touched (dead-letter retry)."""
        raise NotImplementedError

    def take(self) -> list[Op]:
        """Every pending row as write ops (coalesced: one per row); pending becomes empty."""
        raise NotImplementedError

    def flushed(self) -> None:
        """A batch committed: trim the caches. Entries touched in the last batches are
        the most recent ones, so with capacity ≫ keys per batch nothing uncommitted goes."""

    def has_pending(self) -> bool:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all in-memory state (it is reloaded from the tables on demand)."""
        self.__init__()  # type: ignore[misc]

    # -- helpers -----------------------------------------------------------
    def query(self, statement: str, params: tuple[Any, ...]) -> list[Row]:
        assert self.reader is not None, "view used before bind()"
        cur = self.reader.cursor()
        cur.execute(statement.format(**self.names), params)
        return cur.fetchall()


class LRU(Generic[K, V]):
    """A bounded mapping; `get` refreshes recency. Evicts only on `trim()`."""

    __slots__ = ("capacity", "items")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self.items

    def __setitem__(self, key: K, value: V) -> None:
        self.items[key] = value
        self.items.move_to_end(key)

    def pop(self, key: K) -> None:
        self.items.pop(key, None)

    def trim(self, keep: Callable[[K], bool] = lambda _: False) -> None:
        """Drop the least recently used entries past capacity (except those `keep`s)."""
        excess = len(self.items) - self.capacity
        if excess <= 0:
            return
        for key in list(self.items)[:excess]:
            if not keep(key):
                del self.items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self.items)


def memo(obj: Any, compute: Callable[[Any], Any]) -> Any:
    """Constant facts of a cached object (its ids as text…), computed once per object.

    `str(uuid)` and `isoformat()` dominated rendering; the cache's aggregates
    are private to the runner, so an extra attribute on them is harmless.
    """
    found = obj.__dict__.get("_darkroom_memo")
    if found is None:
        found = obj.__dict__["_darkroom_memo"] = compute(obj)
    return found


def sid(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def jsonable(value: Any) -> Any:
    """A query row (psycopg types) in the JSON shape handlers emit."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def jsonable_row(row: Row) -> Row:
    """A view row from psycopg in the JSON shape handlers emit (top level only: the
    JSON columns come back JSON-native, so they are not walked)."""
    out = {}
    for key, value in row.items():
        kind = type(value)
        if kind is UUID or kind is Decimal:
            value = str(value)
        elif kind is datetime:
            value = value.isoformat()
        elif kind is list and value and type(value[0]) is UUID:
            value = [str(v) for v in value]
        out[key] = value
    return out


try:  # optional: ~5x faster than the stdlib json on view rows
    import orjson

    def dumps(value: Any) -> str:
        return orjson.dumps(value, default=_default).decode()
except ImportError:  # pragma: no cover - exercised where orjson is absent

    def dumps(value: Any) -> str:
        # NaN is not JSON (orjson writes null); nothing downstream re-checks the text.
        return json.dumps(value, separators=(",", ":"), default=_default, allow_nan=False)


def _default(value: Any) -> Any:
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON-able: {type(value).__name__}")

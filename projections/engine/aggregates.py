"""An LRU of aggregate states folded from the log, shared by every view of a runner.

The runner folds each event it reads into the cache, so a cached aggregate is
always as of the runner's read position. A miss loads from the event store:
the event's own aggregate at the version just before the event, any other
aggregate as of the current position.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import (
    CanMutateAggregate,
    DecoratedFuncCaller,
    _spec_filter_kwargs_for_method_params,
    decorated_funcs,
)
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate

DEFAULT_CAPACITY = 200_000


class AggregateCache:
    """Aggregate states by id, least recently used dropped past `capacity`."""

    def __init__(self, app: Application[Any], capacity: int = DEFAULT_CAPACITY) -> None:
        self.app = app
        self.capacity = capacity
        self.items: OrderedDict[UUID, Aggregate] = OrderedDict()
        self.position = 0
        self.loads = 0
        self._appliers: dict[type, Callable[[Any, Any], Any] | None] = {}
        recorder: Any = app.recorder
        self._version_at = sql.SQL(
            "SELECT max(originator_version) FROM {}.{} WHERE originator_id = %s "
            "AND notification_id <= %s"
        ).format(
            sql.Identifier(recorder.datastore.schema), sql.Identifier(recorder.events_table_name)
        )

    def before(self, event: Any) -> Aggregate | None:
        """The event's aggregate just before the event (None for a creation)."""
        version = event.originator_version
        if version == 1:
            return None
        ident = event.originator_id
        aggregate = self.items.get(ident)
        if aggregate is not None and aggregate.version == version - 1:
            self.items.move_to_end(ident)
            return aggregate
        self.loads += 1
        aggregate = self.app.repository.get(ident, version=version - 1)
        self._put(ident, aggregate)
        return aggregate

    def fold(self, event: Any, aggregate: Aggregate | None) -> Aggregate:
        """Apply `event` to the state `before` returned; cache and return the result."""
        cls = type(event)
        try:
            applier = self._appliers[cls]
        except KeyError:
            applier = self._appliers[cls] = direct_applier(cls)
        if (
            applier is not None
            and aggregate is not None
            and event.originator_id == aggregate.id
            and event.originator_version == aggregate.version + 1
        ):
            applier(event, aggregate)
            return aggregate
        folded: Aggregate = event.mutate(aggregate)
        if aggregate is None:
            self._put(event.originator_id, folded)
        return folded

    def forget(self, ident: Any) -> None:
        self.items.pop(ident, None)

    def current(self, ident: UUID) -> Aggregate | None:
        """Any aggregate as of the read position (None if it did not exist yet)."""
        aggregate = self.items.get(ident)
        if aggregate is not None:
            self.items.move_to_end(ident)
            return aggregate
        version = self._version_as_of(ident, self.position)
        if version is None:
            return None
        self.loads += 1
        try:
            aggregate = self.app.repository.get(ident, version=version)
        except AggregateNotFoundError:
            return None
        self._put(ident, aggregate)
        return aggregate

    def _version_as_of(self, ident: UUID, position: int) -> int | None:
        recorder: Any = self.app.recorder
        with recorder.datastore.get_connection() as conn, conn.cursor() as cur:
            cur.execute(self._version_at, (ident, position))
            row = cur.fetchone()
        value = None if row is None else next(iter(row.values()))
        return None if value is None else int(value)

    def _put(self, ident: UUID, aggregate: Aggregate) -> None:
        self.items[ident] = aggregate
        self.items.move_to_end(ident)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)

    def clear(self) -> None:
        self.items.clear()


def direct_applier(cls: type) -> Callable[[Any, Any], None] | None:
    """What `event.mutate(aggregate)` does for an `@event`-decorated method's event,
    without the library's per-event lookups (a third of folding, profiled); None
    when the class mutates in any other way (then the library's `mutate` runs).

    The library's checks (same aggregate, next version) are made by the caller;
    the method gets the same keyword arguments the library would pass it.
    """
    if getattr(cls, "mutate", None) is not CanMutateAggregate.mutate:
        return None
    if not issubclass(cls, DecoratedFuncCaller) or cls not in decorated_funcs:
        return None
    own_apply = [k for k in cls.__mro__ if "apply" in vars(k)]
    if own_apply != [DecoratedFuncCaller, CanMutateAggregate]:
        return None  # some class in between applies more
    func = decorated_funcs[cls]
    names = _spec_filter_kwargs_for_method_params(func)

    def apply(event: Any, aggregate: Any) -> None:
        func(aggregate, **{k: v for k, v in event.__dict__.items() if k in names})
        aggregate.version = event.originator_version
        aggregate.modified_on = event.timestamp

    return apply

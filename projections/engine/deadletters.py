"""Dead letters: recording a view's failure on an event, and retrying on request.

A handler that raises sends the event to `projection_dead_letters` (in the
batch's transaction) and the runner goes on; an event PostgreSQL refuses even
alone is dead-lettered for every hosted view and skipped. `retry NAME` marks
letters; the runner hosting the view (or the command itself) re-renders what
each event touched from current state and deletes the letter with the rows.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from projections.engine.writer import DeadLetter, write_dead
from projections.views.base import Context

if TYPE_CHECKING:
    import psycopg
    from eventsourcing.application import Application
    from eventsourcing.persistence import Notification

    from projections.engine.aggregates import AggregateCache
    from projections.engine.batcher import Sink
    from projections.views.base import View

log = logging.getLogger("darkroom.projections")


class DeadLetters:
    """The letters and retries the next batch writes, for the views one runner hosts."""

    def __init__(self, app: Application[Any], views: Sequence[View], cache: AggregateCache) -> None:
        self.app = app
        self.views = list(views)
        self.by_name = {v.name: v for v in self.views}
        self.cache = cache
        self.dead: list[DeadLetter] = []
        self.retried: list[tuple[str, int]] = []

    def take(self) -> tuple[list[DeadLetter], list[tuple[str, int]]]:
        """The letters and retried positions collected so far; none are pending after."""
        taken = self.dead, self.retried
        self.dead, self.retried = [], []
        return taken

    def skip_poison(
        self,
        conn: psycopg.Connection[Any],
        sinks: dict[str, Sink],
        position: int,
        error: Exception,
    ) -> None:
        recorder: Any = self.app.recorder
        found = recorder.select_notifications(position, 1, stop=position)
        topic = found[0].topic if found else ""
        log.error(
            "event %s (%s) cannot be written: dead-lettered for %s",
            position,
            topic,
            [v.name for v in self.views],
        )
        with conn.transaction():
            cur = conn.cursor()
            trace = "".join(traceback.format_exception(error))
            write_dead(
                cur,
                [
                    DeadLetter(
                        v.name,
                        position,
                        topic,
                        found[0].originator_id if found else None,
                        found[0].originator_version if found else None,
                        f"{type(error).__name__}: {error}",
                        trace,
                    )
                    for v in self.views
                ],
            )
            cur.execute(
                "UPDATE projection_tracking t SET position = %s, updated_at = now() "
                "FROM unnest(%s::text[], %s::int[]) AS w(view, version) "
                "WHERE t.view = w.view AND t.version = w.version AND t.position < %s",
                (
                    position,
                    [v.name for v in self.views],
                    [sinks[v.name].version for v in self.views],
                    position,
                ),
            )

    def record(self, view: View, n: Notification, error: Exception) -> None:
        log.warning("view %s failed on position %s (%s): %s", view.name, n.id, n.topic, error)
        self.dead.append(
            DeadLetter(
                view.name,
                n.id,
                n.topic,
                n.originator_id,
                n.originator_version,
                f"{type(error).__name__}: {error}",
                traceback.format_exc(),
            )
        )

    def requested(self, reader: psycopg.Connection[Any]) -> bool:
        row = reader.execute(
            "SELECT EXISTS (SELECT 1 FROM projection_dead_letters WHERE retry_requested "
            "AND view = ANY(%s)) AS any",
            ([v.name for v in self.views],),
        ).fetchone()
        return bool(row and row["any"])

    def retry_requested(self, reader: psycopg.Connection[Any], at: int) -> None:
        """Re-render every letter marked for retry, as of position `at`."""
        rows = reader.execute(
            "SELECT view, position FROM projection_dead_letters WHERE retry_requested "
            "AND view = ANY(%s) ORDER BY position",
            ([v.name for v in self.views],),
        ).fetchall()
        for row in rows:
            self.retry_one(row["view"], int(row["position"]), at)

    def retry_one(self, view_name: str, position: int, at: int) -> bool:
        """Re-render what the event at `position` touched; the dead letter goes on success."""
        view = self.by_name[view_name]
        recorder: Any = self.app.recorder
        found = recorder.select_notifications(position, 1, stop=position)
        ctx = Context(self.cache)
        ctx.position = at
        try:
            if not found:
                raise LookupError(f"no event at position {position}")
            view.refresh(self.app.mapper.to_domain_event(found[0]), ctx)
        except Exception as error:
            self.dead.append(
                DeadLetter(
                    view_name,
                    position,
                    found[0].topic if found else "",
                    None,
                    None,
                    f"{type(error).__name__}: {error}",
                    traceback.format_exc(),
                )
            )
            return False
        self.retried.append((view_name, position))
        return True

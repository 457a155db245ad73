"""The live runner's side of a rebuild hand-over (see projections.engine.ops and docs)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from projections import db
from projections.engine.writes import apply

if TYPE_CHECKING:
    import psycopg

    from projections.engine.batcher import Sink
    from projections.views.base import View

log = logging.getLogger("darkroom.projections")


class RestartRequiredError(Exception):
    """The runner's in-memory state no longer matches the tables: reload and go on."""


class Handover:
    """Freezes a view's version on request, retargets it to the rebuilt version, or
    unfreezes it when the rebuild vanished. Changes the runner's `sinks` in place."""

    def __init__(self, schema: str, views: Sequence[View], sinks: dict[str, Sink]) -> None:
        self.schema = schema
        self.views = list(views)
        self.by_name = {v.name: v for v in self.views}
        self.sinks = sinks

    def pending(self, reader: psycopg.Connection[Any]) -> bool:
        row = reader.execute(
            "SELECT count(*) AS n FROM projection_registry r JOIN unnest(%s::text[], %s::int[]) "
            "AS h(view, version) ON r.view = h.view "
            "WHERE r.handover_state IS NOT NULL OR r.active_version <> h.version",
            (
                [v.name for v in self.views],
                [self.sinks[v.name].version for v in self.views],
            ),
        ).fetchone()
        return bool(row and row["n"]) or any(s.frozen for s in self.sinks.values())

    def registry_versions(self, reader: psycopg.Connection[Any]) -> dict[str, int]:
        # The reader (autocommit): a read on the writer would open a transaction
        # that every later batch would only nest in as a savepoint.
        found = db.registry(reader, [v.name for v in self.views])
        return {name: int(row["active_version"]) for name, row in found.items()}

    def serve(
        self,
        cur: psycopg.Cursor[Any],
        position: int,
        reader: psycopg.Connection[Any],
        writer: psycopg.Connection[Any],
    ) -> list[Callable[[], None]]:
        """Serve rebuild hand-overs of hosted views (see docs/PROJECTIONS.md)."""
        cur.execute(
            "SELECT * FROM projection_registry WHERE view = ANY(%s) FOR UPDATE",
            ([v.name for v in self.views],),
        )
        actions: list[Callable[[], None]] = []
        for row in cur.fetchall():
            view, sink = self.by_name[row["view"]], self.sinks[row["view"]]
            state, active = row["handover_state"], int(row["active_version"])
            if not sink.frozen and active != sink.version:
                # Switched while we were not frozen (we restarted mid hand-over):
                # start again from the tables, the new version catches up alone.
                raise RestartRequiredError(f"{view.name} now serves version {active}")
            if not sink.frozen and state in ("requested", "frozen"):
                self._freeze(cur, view, sink, position, actions)
            elif sink.frozen and int(row["active_version"]) != sink.version:
                actions.extend(
                    self._retarget(
                        cur,
                        view,
                        sink,
                        int(row["active_version"]),
                        position,
                        reader,
                        writer,
                    )
                )
            elif sink.frozen and self._rebuilder_gone(reader, view.name):
                log.warning(
                    "rebuild of %s vanished; writing version %s again",
                    view.name,
                    sink.version,
                )
                cur.execute(
                    "UPDATE projection_registry SET handover_state = NULL, "
                    "handover_version = NULL, frozen_at = NULL WHERE view = %s",
                    (view.name,),
                )
                view.forget_new()
                sink.frozen = False
        return actions

    def _freeze(
        self,
        cur: psycopg.Cursor[Any],
        view: View,
        sink: Sink,
        position: int,
        actions: list[Callable[[], None]],
    ) -> None:
        # This batch still goes to the old version; from the next one on the
        # view's rows stay pending in memory until the new version is active.
        cur.execute(
            "UPDATE projection_registry SET handover_state = 'frozen', frozen_at = %s, "
            "updated_at = now() WHERE view = %s",
            (position, view.name),
        )

        def freeze() -> None:
            sink.frozen = True

        actions.append(freeze)

    def _retarget(
        self,
        cur: psycopg.Cursor[Any],
        view: View,
        sink: Sink,
        version: int,
        position: int,
        reader: psycopg.Connection[Any],
        writer: psycopg.Connection[Any],
    ) -> list[Callable[[], None]]:
        cur.execute(
            "SELECT position FROM projection_tracking WHERE view = %s AND version = %s",
            (view.name, version),
        )
        row = cur.fetchone()
        if row is None or int(row["position"]) > position:
            return []  # the new version is ahead of us: keep pending until we pass it
        old = sink.version
        names = db.names_for(view.tables, version)
        view.forget_new()  # the new version may hold rows created after the freeze
        apply(cur, names, view.take())  # every pending row, into the new version's tables
        cur.execute(
            "UPDATE projection_tracking SET position = %s, updated_at = now() "
            "WHERE view = %s AND version = %s",
            (position, view.name, version),
        )
        cur.execute(
            "UPDATE projection_registry SET handover_state = NULL, handover_version = "
            "NULL, frozen_at = NULL, updated_at = now() WHERE view = %s",
            (view.name,),
        )
        sink.version, sink.names, sink.frozen = version, names, False
        view.bind(reader, names)

        def drop_old() -> None:
            with writer.transaction():
                db.drop_tables(writer, view.tables, old)
                writer.execute(
                    "DELETE FROM projection_tracking WHERE view = %s AND version = %s",
                    (view.name, old),
                )

        return [drop_old]

    def _rebuilder_gone(self, reader: psycopg.Connection[Any], view_name: str) -> bool:
        key = db.lock_key(f"rebuild:{view_name}", self.schema)
        got = reader.execute("SELECT pg_try_advisory_lock(%s) AS got", (key,)).fetchone()
        if got and got["got"]:
            reader.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return True
        return False

"""Operations on the read side: status, rebuild with hand-over, dead letters, retention.

Rebuild protocol (see docs/PROJECTIONS.md): the rebuild builds version N+1
of one view from position 0 in its own tables while version N keeps serving.
When it is close to the head it asks the live runner (through
`projection_registry`) to freeze version N; the live runner keeps that
view's rows pending in memory from then on. The rebuild catches up past the
freeze point and switches the SQL view to N+1 in one transaction; the live
runner then writes its pending rows into N+1 and carries on there. With no
live runner the rebuild catches up and switches by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from projections import changelog, db, view_classes
from projections.engine.runner import Runner
from projections.engine.tables import prepare
from projections.errors import LockNotAcquiredError, RebuildError, UnknownViewError

if TYPE_CHECKING:
    from eventsourcing.application import Application

Progress = Callable[[int, int], None]


def view_class(name: str) -> type[Any]:
    try:
        return view_classes()[name]
    except KeyError:
        raise UnknownViewError(
            f"no view named {name!r}; known: {', '.join(view_classes())}"
        ) from None


# -- status ---------------------------------------------------------------------


def status(app: Application[Any], conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Each view: serving version, position, head, lag (events, seconds), dead letters."""
    head = head_position(app)
    rows = conn.execute(
        "SELECT r.view, r.active_version, r.handover_state, COALESCE(t.position, 0) AS position, "
        "t.updated_at, (SELECT count(*) FROM projection_dead_letters d WHERE d.view = r.view) "
        "AS dead_letters FROM projection_registry r LEFT JOIN projection_tracking t "
        "ON t.view = r.view AND t.version = r.active_version ORDER BY r.view"
    ).fetchall()
    report = []
    for row in rows:
        position = int(row["position"])
        report.append(
            {
                "view": row["view"],
                "version": row["active_version"],
                "position": position,
                "head": head,
                "lag_events": max(0, head - position),
                "lag_seconds": _lag_seconds(app, position, head),
                "dead_letters": int(row["dead_letters"]),
                "handover": row["handover_state"],
                "updated_at": row["updated_at"].isoformat() if row["updated_at"] else None,
            }
        )
    return report


def _lag_seconds(app: Application[Any], position: int, head: int) -> float:
    """Age of the oldest event the view has not processed yet (0 when caught up)."""
    if position >= head:
        return 0.0
    recorder: Any = app.recorder
    found = recorder.select_notifications(position, 1, inclusive_of_start=False)
    if not found:
        return 0.0
    event: Any = app.mapper.to_domain_event(found[0])
    stamp: datetime = event.timestamp
    return max(0.0, (datetime.now(UTC) - stamp).total_seconds())


def head_position(app: Application[Any]) -> int:
    """The highest position in the log (0 when empty)."""
    recorder: Any = app.recorder
    if hasattr(recorder, "head_position"):
        return int(recorder.head_position())
    return int(recorder.max_notification_id() or 0)


# -- rebuild --------------------------------------------------------------------


def rebuild(
    app: Application[Any],
    conninfo: str,
    schema: str,
    name: str,
    *,
    progress: Progress | None = None,
    timeout: float = 60.0,
    poll: float = 0.05,
) -> int:
    """Rebuild view `name` into a new version from position 0 and switch to it.

    Queries keep being served by the old version until the switch (one
    transaction). Returns the new version. `progress(position, head)` is called
    after every batch.
    """
    cls = view_class(name)
    locks = psycopg.connect(conninfo, autocommit=True)
    conn = db.connect(conninfo, schema)
    runner: Runner | None = None
    try:
        if not _try_lock(locks, f"rebuild:{name}", schema):
            raise RebuildError(f"a rebuild of {name!r} is already running")
        prepare(conn, [cls()], managed=True, versions={})
        version = _next_version(conn, name)
        head = [head_position(app)]

        def report(position: int) -> None:
            if progress is not None:
                progress(position, max(position, head[0]))

        runner = Runner(
            app,
            conninfo,
            schema,
            [cls()],
            managed=False,
            versions={name: version},
            changelog_enabled=False,
            on_batch=report,
        )
        runner.open()
        runner.catch_up()
        if _try_lock(locks, f"view:{name}", schema):
            # No live runner hosts the view: finish alone, holding its lock.
            head[0] = runner.catch_up()
            _switch(conn, name, version, drop_previous=True)
            return version
        _handover(app, conn, runner, name, version, head, timeout, poll)
        return version
    finally:
        if runner is not None:
            runner.close()
        conn.close()
        locks.close()


def _handover(
    app: Application[Any],
    conn: psycopg.Connection[Any],
    runner: Runner,
    name: str,
    version: int,
    head: list[int],
    timeout: float,
    poll: float,
) -> None:
    conn.execute(
        "UPDATE projection_registry SET handover_version = %s, handover_state = "
        "'requested', frozen_at = NULL, updated_at = now() WHERE view = %s",
        (version, name),
    )
    deadline = time.monotonic() + timeout
    while True:
        head[0] = head_position(app)
        runner.catch_up()
        row = db.registry(conn, [name])[name]
        if row["handover_state"] == "frozen" and runner.position >= int(row["frozen_at"]):
            _switch(conn, name, version, drop_previous=False, state="switched")
            break
        if time.monotonic() > deadline:
            conn.execute(
                "UPDATE projection_registry SET handover_state = NULL, "
                "handover_version = NULL, frozen_at = NULL WHERE view = %s",
                (name,),
            )
            raise RebuildError(
                f"the runner hosting {name!r} did not hand over within "
                f"{timeout:g} s; version {version} left unused"
            )
        time.sleep(poll)
    # The live runner now writes its pending rows into the new version and
    # drops the old one; wait for it so the caller sees the final state.
    while time.monotonic() < deadline:
        row = db.registry(conn, [name])[name]
        if row["handover_state"] is None:
            return
        time.sleep(poll)


def _switch(
    conn: psycopg.Connection[Any],
    name: str,
    version: int,
    *,
    drop_previous: bool,
    state: str | None = None,
) -> None:
    bases = view_class(name).tables
    with conn.transaction():
        found: Any = conn.execute(
            "SELECT active_version FROM projection_registry WHERE view = %s FOR UPDATE", (name,)
        ).fetchone()
        old = int(found["active_version"])
        conn.execute(
            "UPDATE projection_registry SET active_version = %s, handover_state = %s, "
            "handover_version = NULL, updated_at = now() WHERE view = %s",
            (version, state, name),
        )
        db.point_views(conn, bases, version)
        if drop_previous and old != version:
            db.drop_tables(conn, bases, old)
            conn.execute(
                "DELETE FROM projection_tracking WHERE view = %s AND version = %s", (name, old)
            )


def _next_version(conn: psycopg.Connection[Any], name: str) -> int:
    """The active version + 1; leftovers of an abandoned rebuild are dropped first."""
    active = int(db.registry(conn, [name])[name]["active_version"])
    stale = conn.execute(
        "SELECT version FROM projection_tracking WHERE view = %s AND version > %s", (name, active)
    ).fetchall()
    with conn.transaction():
        for row in stale:
            db.drop_tables(conn, view_class(name).tables, int(row["version"]))
            conn.execute(
                "DELETE FROM projection_tracking WHERE view = %s AND version = %s",
                (name, row["version"]),
            )
    return active + 1


def _try_lock(conn: psycopg.Connection[Any], name: str, schema: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (db.lock_key(name, schema),)).fetchone()
    return bool(row and row[0])


# -- dead letters ---------------------------------------------------------------


def dead_letters(conn: psycopg.Connection[Any], name: str | None = None) -> list[dict[str, Any]]:
    """Events a view's handler raised on, oldest first."""
    rows = conn.execute(
        "SELECT view, position, topic, originator_id, originator_version, error, attempts, "
        "retry_requested, created_at, updated_at FROM projection_dead_letters "
        "WHERE %s::text IS NULL OR view = %s ORDER BY view, position",
        (name, name),
    ).fetchall()
    return [dict(r) for r in rows]


def retry(app: Application[Any], conninfo: str, schema: str, name: str) -> dict[str, int]:
    """Replay a view's dead letters: by the live runner if one hosts the view, else here.

    Returns `{"requested": n, "remaining": m}`.
    """
    cls = view_class(name)
    conn = db.connect(conninfo, schema)
    try:
        db.ensure_meta(conn)
        requested = conn.execute(
            "UPDATE projection_dead_letters SET retry_requested = true, updated_at = now() "
            "WHERE view = %s",
            (name,),
        ).rowcount
        runner = Runner(app, conninfo, schema, [cls()], managed=True)
        try:
            runner.acquire(wait=False)
        except LockNotAcquiredError:
            _wait_for_retries(conn, name)  # the live runner picks them up within a tick
        else:
            with runner:
                runner.open()
                runner.retry_dead_letters()
        row: Any = conn.execute(
            "SELECT count(*) AS n FROM projection_dead_letters WHERE view = %s", (name,)
        ).fetchone()
        remaining = row["n"]
        return {"requested": requested, "remaining": int(remaining)}
    finally:
        conn.close()


def _wait_for_retries(conn: psycopg.Connection[Any], name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row: Any = conn.execute(
            "SELECT count(*) AS n FROM projection_dead_letters WHERE view = %s AND retry_requested",
            (name,),
        ).fetchone()
        if not row["n"]:
            return
        time.sleep(0.05)


def prune_changelog(
    conn: psycopg.Connection[Any], older_than: timedelta = changelog.RETENTION
) -> int:
    """Apply the change-log retention (default 7 days); returns rows deleted."""
    return changelog.prune(conn, older_than)

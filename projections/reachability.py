"""Is PostgreSQL reachable? Refuse at once while it is not, and notice its return at once.

Without this, a stopped PostgreSQL made every request wait for a pool connection that
could not come (30 s per attempt, retried by the event store: up to a minute), and after
its return the pools reconnected on a doubling back-off (1, 2, 4 ... s).

- `database_reachable(conninfo, timeout_s=1.0)`: one fresh connection and `SELECT 1`; a
  readiness probe can call it.
- `DatabaseWatch`: one daemon thread per process and database holding one probe
  connection: `SELECT 1` every `interval_s` (0.2 s) while up; when that fails the watch
  is down and a fresh connection is tried every `interval_s`. A guarded pool
  (`guard(pool)`) raises `DatabaseUnavailableError` from `getconn` at once while the watch
  is down, and waits at most `wait_s` at a time for a connection while it is up; a
  connection handed back broken makes the watch probe at once. On the
  way back up the watch first checks each guarded pool's idle connections (psycopg_pool's
  `check()`: broken ones are replaced at once), then opens again: the first requests after
  the return do not pick up connections the outage broke.
- `watch_for(conninfo)`: the process's watch for that database, started on first use.
- `waited_out_outage(conninfo, stopping)` (`outage_now` + `wait_for_database`): after a
  failure, whether it was the database going away; if so it returns once the database is
  back, so a projections runner restarts at once instead of on its crash back-off.

psycopg_pool retries a lost connection on a back-off that doubles from 1 s; the watch
makes it a steady `RECONNECT_DELAY_S` for every pool of the process (connecting to a
stopped server fails in microseconds), so a pool is whole again within that delay of the
database's return.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

import psycopg
from eventsourcing import persistence
from psycopg_pool import ConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from projections.errors import DatabaseUnavailableError

log = logging.getLogger("darkroom.database")

RECONNECT_DELAY_S = 0.2

# What a lost or refused database connection raises (the event store translates psycopg's).
DATABASE_DOWN: tuple[type[Exception], ...] = (
    DatabaseUnavailableError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    persistence.OperationalError,
    persistence.InterfaceError,
)


def database_down(error: BaseException) -> bool:
    """Whether `error` says the database is unreachable (a pool merely busy is not)."""
    return isinstance(error, DATABASE_DOWN) and not isinstance(error, PoolTimeout)


def database_reachable(conninfo: str, timeout_s: float = 1.0) -> bool:
    """Whether PostgreSQL at `conninfo` accepts a connection and answers `SELECT 1` now."""
    try:
        with psycopg.connect(
            conninfo,
            connect_timeout=max(1, round(timeout_s)),
            autocommit=True,
            options=f"-c statement_timeout={int(timeout_s * 1000)}",
        ) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


class DatabaseWatch:
    """Up or down, from a probe connection; guarded pools refuse at once while down."""

    def __init__(self, conninfo: str, *, interval_s: float = 0.2, wait_s: float = 0.5) -> None:
        self.conninfo = conninfo
        self.interval_s = interval_s
        self.wait_s = wait_s
        self._up = threading.Event()
        self._up.set()  # until a probe says otherwise
        self._down_since: float | None = None
        self._pools: weakref.WeakSet[ConnectionPool[Any]] = weakref.WeakSet()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.outages = 0

    # -- state -----------------------------------------------------------------------------
    @property
    def up(self) -> bool:
        return self._up.is_set()

    def check(self) -> None:
        """Raise `DatabaseUnavailableError` while the database is down."""
        if not self._up.is_set():
            since = self._down_since
            raise DatabaseUnavailableError(None if since is None else time.monotonic() - since)

    def wait_up(self, timeout: float | None = None) -> bool:
        return self._up.wait(timeout)

    def suspect(self) -> None:
        """Something failed on a connection: probe at once."""
        self._wake.set()

    # -- pools -----------------------------------------------------------------------------
    def guard(self, pool: ConnectionPool[Any]) -> ConnectionPool[Any]:
        """`pool.getconn` refuses at once while down (idempotent)."""
        if getattr(pool, "_darkroom_watch", None) is self:
            return pool
        original = pool.getconn

        def getconn(timeout: float | None = None) -> Any:
            deadline = time.monotonic() + (pool.timeout if timeout is None else timeout)
            while True:
                self.check()
                step = min(self.wait_s, deadline - time.monotonic())
                try:
                    return original(timeout=max(step, 0.001))
                except PoolTimeout:
                    if time.monotonic() >= deadline:
                        raise
                    # No connection came: busy, or the database is gone and the pool
                    # cannot reconnect. The probe tells which before the next round.
                    self.suspect()

        returned = pool.putconn

        def putconn(conn: Any) -> None:
            if getattr(conn, "broken", False):
                self.suspect()  # a connection lost mid-use: probe now, not at the next tick
            returned(conn)

        pool.getconn = getconn  # type: ignore[method-assign]
        pool.putconn = putconn  # type: ignore[method-assign]
        pool._darkroom_watch = self  # type: ignore[attr-defined]
        self._pools.add(pool)
        return pool

    # -- the probe -------------------------------------------------------------------------
    def start(self) -> DatabaseWatch:
        with self._lock:
            if self._thread is None:
                # Every pool of the process reconnects on a steady short delay.
                AttemptWithBackoff.INITIAL_DELAY = RECONNECT_DELAY_S
                AttemptWithBackoff.DELAY_BACKOFF = 1.0
                self._thread = threading.Thread(
                    target=self._probe, name="database-watch", daemon=True
                )
                self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _probe(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stopping.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(
                        self.conninfo,
                        connect_timeout=2,
                        autocommit=True,
                        options="-c statement_timeout=2000",
                    )
                    if not self.up:
                        self._recover()
                conn.execute("SELECT 1")
            except psycopg.Error as error:
                if conn is not None:
                    conn.close()
                    conn = None
                self._went_down(error)
            self._wake.wait(self.interval_s)
            self._wake.clear()
        if conn is not None:
            conn.close()

    def _went_down(self, error: Exception) -> None:
        if self.up:
            self._down_since = time.monotonic()
            self.outages += 1
            self._up.clear()
            log.warning(
                "database unreachable (%s); requests answer 503 until it is back",
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
            )

    def _recover(self) -> None:
        for pool in list(self._pools):
            try:
                pool.check()  # broken idle connections out, fresh ones in
            except Exception:
                log.exception("checking the pool %s after the database's return", pool.name)
        since = self._down_since
        self._up.set()
        log.warning(
            "database reachable again after %.1f s",
            0.0 if since is None else time.monotonic() - since,
        )


_WATCHES: dict[str, DatabaseWatch] = {}
_WATCHES_LOCK = threading.Lock()


def watch_for(conninfo: str) -> DatabaseWatch:
    """The process's (started) watch of the database at `conninfo`."""
    with _WATCHES_LOCK:
        watch = _WATCHES.get(conninfo)
        if watch is None:
            watch = _WATCHES[conninfo] = DatabaseWatch(conninfo)
        return watch.start()


def outage_now(conninfo: str) -> bool:
    """Whether the database is down now (the process's watch says so, or a connect fails)."""
    return not (watch_for(conninfo).up and database_reachable(conninfo))


def wait_for_database(conninfo: str, stopping: threading.Event) -> None:
    """Returns once the process's watch sees the database (or `stopping` is set)."""
    watch = watch_for(conninfo)
    while not stopping.is_set() and not watch.wait_up(0.05):
        pass


def waited_out_outage(conninfo: str, stopping: threading.Event) -> bool:
    """Whether the database is down now; if so, returns once it is back (or `stopping`)."""
    if not outage_now(conninfo):
        return False
    wait_for_database(conninfo, stopping)
    return True

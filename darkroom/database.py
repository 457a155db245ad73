"""Where the PostgreSQL server comes from: `DATABASE_URL`, or an embedded one.

With no `DATABASE_URL` a real PostgreSQL is started from the `pgserver` package
in a data folder and reused across runs; pgserver stops it when the last
process that asked for it exits.

pgserver keeps the processes attached to a data folder in `.handle_pids.json`
and stops the server when the last one leaves cleanly. A process killed with
SIGKILL never leaves that list, so on its own pgserver would never stop the
server again. Every process therefore prunes the dead (or reused) PIDs from
the list when it joins and again just before pgserver decides at exit; the
start time of each of our PIDs is kept beside it (`.darkroom_handles.json`) so
a PID reused by another program does not count as attached. `darkroom db
status|stop` reads and acts on the same files (`embedded_status`,
`stop_embedded`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import psutil
import psycopg


@dataclass(frozen=True)
class Database:
    """Connection facts in the shapes psycopg and eventsourcing each want."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    @property
    def conninfo(self) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.dbname,
        )

    def eventsourcing_env(self, schema: str = "public", pool_size: int = 8) -> dict[str, str]:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_size * 2),
            "POSTGRES_LOCK_TIMEOUT": "10",
        }

    def with_dbname(self, dbname: str) -> Database:
        return Database(self.host, self.port, self.user, self.password, dbname)


def parse_url(url: str) -> Database:
    parts = urlparse(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    return Database(
        host=unquote(host),
        port=parts.port or 5432,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=(parts.path or "/postgres").lstrip("/") or "postgres",
    )


@cache
def embedded(pg_dir: Path) -> Database:
    """Start (or join) the embedded server in `pg_dir`; blocks about 1-2 s on first start."""
    from pgserver.postgres_server import get_server

    pg_dir = pg_dir.resolve()
    pg_dir.mkdir(parents=True, exist_ok=True)
    if (pg_dir / "PG_VERSION").exists():
        prune_handles(pg_dir)
        tune(pg_dir)
    _tune_after_initdb()
    server = get_server(pg_dir, cleanup_mode="stop")
    _KEEP.append(server)
    with _pgserver_lock():
        _record_start_time(pg_dir, os.getpid())
    # atexit runs last-registered first: this prune comes just before pgserver's own
    # exit handler (registered when the server object was made) counts what is left.
    atexit.register(prune_handles, pg_dir)
    return parse_url(server.get_uri())


_KEEP: list[object] = []  # the server stops when its handle is collected

# Every serving process holds a few pools plus a reachability probe, and one test run
# starts several servers and role processes at once: PostgreSQL's default of 100
# connections was seen exhausted ("too many clients already").
SETTINGS = {"max_connections": "300"}


def tune(pg_dir: Path) -> None:
    """Write SETTINGS into the data folder's postgresql.conf (read at the next start)."""
    conf = pg_dir / "postgresql.conf"
    if not conf.exists():
        return
    text = conf.read_text()
    missing = [
        f"{key} = {value}"
        for key, value in SETTINGS.items()
        if f"\n{key} = {value}  # darkroom" not in text
    ]
    if missing:
        conf.write_text(text + "".join(f"\n{line}  # darkroom" for line in missing) + "\n")


@cache
def _tune_after_initdb() -> None:
    """pgserver runs initdb and starts the server in one call: tune a new folder between."""
    from pgserver.postgres_server import PostgresServer

    initialise = PostgresServer.ensure_pgdata_inited

    def ensure_pgdata_inited(self: Any) -> None:
        initialise(self)
        tune(Path(self.pgdata))

    PostgresServer.ensure_pgdata_inited = ensure_pgdata_inited  # type: ignore[method-assign]


HANDLES = ".handle_pids.json"  # pgserver's list of attached processes
STARTED = ".darkroom_handles.json"  # ours: pid -> its start time, to spot reused pids


@contextlib.contextmanager
def _pgserver_lock() -> Iterator[None]:
    """pgserver's inter-process lock: the one it holds while it starts, joins or stops."""
    from pgserver.postgres_server import PostgresServer

    with PostgresServer._lock:
        yield


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value))
    temporary.replace(path)


def _start_time(pid: int) -> float | None:
    """When `pid` started, or None when no live process has it (zombies are dead)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return -1.0  # alive, start time unknown


def _record_start_time(pg_dir: Path, pid: int) -> None:
    started = _read_json(pg_dir / STARTED, {})
    started = started if isinstance(started, dict) else {}
    started[str(pid)] = _start_time(pid)
    _write_json(pg_dir / STARTED, started)


def _alive(pid: int, started: dict[str, Any]) -> bool:
    now = _start_time(pid)
    if now is None:
        return False
    then = started.get(str(pid))
    # A pid we recorded whose process started at another time was reused.
    return not (isinstance(then, int | float) and then >= 0 and now >= 0 and abs(now - then) > 1.0)


def prune_handles(pg_dir: Path) -> list[int]:
    """Drop dead processes from pgserver's list of attached ones; the live ones remain."""
    pg_dir = pg_dir.resolve()
    with _pgserver_lock():
        pids = _read_json(pg_dir / HANDLES, [])
        started = _read_json(pg_dir / STARTED, {})
        pids = [p for p in pids if isinstance(p, int)] if isinstance(pids, list) else []
        started = started if isinstance(started, dict) else {}
        live = [p for p in pids if _alive(p, started)]
        if live != pids and (pg_dir / HANDLES).exists():
            _write_json(pg_dir / HANDLES, live)
        kept = {k: v for k, v in started.items() if k.isdigit() and int(k) in live}
        if kept != started and (pg_dir / STARTED).exists():
            _write_json(pg_dir / STARTED, kept)
        return live


@dataclass
class EmbeddedStatus:
    """What `darkroom db status` reports about the embedded server in `pg_dir`."""

    pg_dir: Path
    initialised: bool
    pid: int | None = None
    running: bool = False
    socket_dir: str | None = None
    attached: list[int] = field(default_factory=list)  # live processes using it
    stale: list[int] = field(default_factory=list)  # dead pids still in pgserver's list

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.pg_dir),
            "initialised": self.initialised,
            "pid": self.pid,
            "running": self.running,
            "socket_dir": self.socket_dir,
            "attached": self.attached,
            "stale": self.stale,
        }


def _postmaster(pg_dir: Path) -> tuple[int | None, str | None, bool]:
    """(pid, socket dir, running) from `postmaster.pid`; running means that pid is a
    live `postgres` process serving this data folder."""
    try:
        lines = (pg_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None, None, False
    socket_dir = lines[4].strip() if len(lines) > 4 and lines[4].strip() else None
    try:
        process = psutil.Process(pid)
        running = process.status() != psutil.STATUS_ZOMBIE and "postgres" in process.name()
    except psutil.Error:
        running = False
    return pid, socket_dir, running


def embedded_status(pg_dir: Path) -> EmbeddedStatus:
    """The embedded server's state, read without starting or joining it."""
    pg_dir = pg_dir.resolve()
    status = EmbeddedStatus(pg_dir, initialised=(pg_dir / "PG_VERSION").exists())
    status.pid, status.socket_dir, status.running = _postmaster(pg_dir)
    pids = _read_json(pg_dir / HANDLES, [])
    started = _read_json(pg_dir / STARTED, {})
    started = started if isinstance(started, dict) else {}
    for pid in pids if isinstance(pids, list) else []:
        if isinstance(pid, int):
            (status.attached if _alive(pid, started) else status.stale).append(pid)
    return status


def stop_embedded(pg_dir: Path, timeout_s: float = 60.0) -> bool:
    """Stop the embedded server in `pg_dir` cleanly (`pg_ctl stop -m fast`) and forget
    every attached process; False when it was not running."""
    from pgserver import _commands

    pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # made at import
    pg_dir = pg_dir.resolve()
    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
    with _pgserver_lock():
        _pid, _socket, running = _postmaster(pg_dir)
        if running:
            pg_ctl(
                ["-w", "-t", str(int(timeout_s)), "-m", "fast", "stop"], pgdata=pg_dir, user=user
            )
        for name in (HANDLES, STARTED):
            if (pg_dir / name).exists():
                _write_json(pg_dir / name, [] if name == HANDLES else {})
    return running


def resolve(database_url: str | None, pg_dir: Path) -> Database:
    return parse_url(database_url) if database_url else embedded(pg_dir)


def create_schema(db: Database, schema: str) -> None:
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(schema))
        )


def drop_schema(db: Database, schema: str) -> None:
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(schema)
            )
        )

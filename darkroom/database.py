"""Where the PostgreSQL server comes from: `DATABASE_URL`, or an embedded one.

With no `DATABASE_URL` a real PostgreSQL is started from the `pgserver` package
in a data folder and reused across runs; pgserver stops it when the last
process that asked for it exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

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
            host=self.host, port=self.port, user=self.user,
            password=self.password, dbname=self.dbname,
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
    import pgserver

    pg_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pg_dir.resolve(), cleanup_mode="stop")
    _KEEP.append(server)
    return parse_url(server.get_uri())


_KEEP: list[object] = []  # the server stops when its handle is collected


def resolve(database_url: str | None, pg_dir: Path) -> Database:
    return parse_url(database_url) if database_url else embedded(pg_dir)


def create_schema(db: Database, schema: str) -> None:
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            psycopg.sql.Identifier(schema)))


def drop_schema(db: Database, schema: str) -> None:
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            psycopg.sql.Identifier(schema)))

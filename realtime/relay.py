"""The change-log relay: PostgreSQL → the fan-out backend (see `realtime.fanout`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable
from typing import Any

import psycopg

from projections.reachability import database_down, watch_for
from realtime.fanout import Batch, Change, FanoutBackend, read_next

log = logging.getLogger("darkroom.realtime.fanout")

NOTIFY_CHANNEL = "darkroom_changes"  # projections.db.NOTIFY_CHANNEL; the runner NOTIFYs it


def relay_lock_key(schema: str) -> int:
    hi = zlib.crc32(f"darkroom-realtime-relay:{schema}".encode())
    return ((hi << 31) ^ zlib.crc32(schema.encode())) & 0x7FFF_FFFF_FFFF_FFFF


class ChangeLogRelay:
    """Reads new change-log rows once and publishes them as batches.

    With `exclusive`, only the holder of the schema's advisory lock relays (one
    reader for the cluster); the others retry every `retry_s` and take over when
    the holder's session ends (a killed process loses its lock at once).
    """

    def __init__(
        self,
        conninfo: str,
        schema: str,
        backend: FanoutBackend,
        *,
        start_head: Callable[[], int],
        exclusive: bool = False,
        poll_s: float = 0.5,
        heartbeat_s: float = 1.0,
        retry_s: float = 0.5,
        max_rows: int = 2000,
    ) -> None:
        self.conninfo = conninfo
        self.max_rows = max_rows
        self.schema = schema
        self.backend = backend
        self.start_head = start_head
        self.exclusive = exclusive
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.retry_s = retry_s
        self.head = 0
        self.leading = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ChangeLogRelay:
        self._task = asyncio.create_task(self._run(), name="changelog-relay")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        down = False
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not database_down(error):
                    log.exception("change-log relay failed; retrying")
                elif not down:
                    log.warning(
                        "change-log relay: the database is unreachable; relaying "
                        "again as soon as it is back"
                    )
                down = database_down(error)
            self.leading = False
            if down:  # retried as soon as the process's database watch sees it back
                await asyncio.sleep(0.05)
                watch = watch_for(self.conninfo)
                while not watch.up:
                    await asyncio.sleep(0.05)
            else:
                await asyncio.sleep(self.retry_s)

    async def _session(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, options=f"-c search_path={self.schema}"
        ) as conn:
            if self.exclusive:
                await self._lead(conn)
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")  # type: ignore[arg-type]
            self.leading = True
            self.head = self.start_head()
            await self._relay(conn)

    async def _lead(self, conn: psycopg.AsyncConnection[Any]) -> None:
        key = relay_lock_key(self.schema)
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = await cur.fetchone()
            if row is not None and row[0]:
                return
            await asyncio.sleep(self.retry_s)

    async def _relay(self, conn: psycopg.AsyncConnection[Any]) -> None:
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        while True:
            upto, changes = await read_next(conn, self.head, self.max_rows + 1)
            if upto > self.head:
                await self.backend.publish(self._batch(upto, changes))
                self.head, last_sent = upto, loop.time()
            elif loop.time() - last_sent >= self.heartbeat_s:
                await self.backend.publish(Batch(self.head, self.head, ()))
                last_sent = loop.time()
            wait = max(0.0, min(self.poll_s, self.heartbeat_s - (loop.time() - last_sent)))
            async for _ in conn.notifies(timeout=wait or 0.001, stop_after=1):
                pass

    def _batch(self, upto: int, changes: list[Change]) -> Batch:
        """The rows up to `upto`; past `max_rows` (a backlog) only the doorbell: each
        hub then reads just the topics it serves."""
        if len(changes) > self.max_rows:
            return Batch(self.head, upto, None)
        return Batch(self.head, upto, tuple(changes))

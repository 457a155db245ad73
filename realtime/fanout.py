"""Fan-out: from the change log in PostgreSQL to every hub process.

- A `Batch` says "the change log from position `after` (exclusive) to `upto`
  (inclusive) is `changes`" (all topics), or, with `changes=None`, only rings
  the doorbell: "read (after, upto] from PostgreSQL yourself".
- A `FanoutBackend` carries batches between processes: `InProcessFanout` (one
  process, no Redis) and `RedisFanout` (`realtime.redis_fanout`: pub/sub on one
  channel per schema).
  Consumers use `async with backend.subscribe() as stream`. Each stream is a
  bounded queue; on overflow the oldest batches are dropped, and the consumer
  (the hub) sees `after` past its head at the next batch and refills from
  PostgreSQL. Redis pub/sub is at-most-once anyway: PostgreSQL stays the truth.
- `ChangeLogRelay` (`realtime.relay`) is the one reader of new change-log rows:
  one LISTEN connection per process in process mode, one per cluster with Redis
  (the holder of an advisory lock; another node takes over when it dies). It
  publishes a batch per committed projection batch and a heartbeat when idle,
  so a node that missed a batch notices within a heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from websockets.frames import Frame, Opcode

from realtime.protocol import encode_change

# Rows at or below the watermark are committed: every active view writes its change
# rows and its tracking position in one transaction, so the lowest tracking position
# of the active views bounds what may still be in flight.
WATERMARK_SQL = (
    "SELECT min(COALESCE(t.position, 0)) AS watermark FROM projection_registry r "
    "LEFT JOIN projection_tracking t ON t.view = r.view AND t.version = r.active_version"
)
# The relay's one round trip: the watermark and the first rows above `after` up to it.
NEXT_SQL = (
    f"WITH w AS ({WATERMARK_SQL}) SELECT w.watermark, c.position, c.topic, c.kind, c.payload "
    "FROM w LEFT JOIN LATERAL (SELECT position, topic, kind, payload::text AS payload "
    "FROM changelog WHERE position > %(after)s AND position <= w.watermark "
    "ORDER BY position, topic LIMIT %(limit)s) c ON true"
)
RANGE_SQL = (
    "SELECT position, topic, kind, payload::text AS payload FROM changelog "
    "WHERE position <= %(upto)s AND (position, topic) > (%(after)s, %(after_topic)s) "
    "AND (%(topics)s::text[] IS NULL OR topic = ANY(%(topics)s)) "
    "ORDER BY position, topic LIMIT %(limit)s"
)


class Change:
    """One change-log row. Its `change` frame is encoded once for every receiver, when
    first asked: as text (`frame`), as UTF-8 bytes (`data`, `size`) and as the bytes
    of a server's websocket text frame without extensions (`framed`: the same for
    every such socket). A change no socket of this process subscribed to is never
    encoded (the relay reads every change of the log; issue 17)."""

    __slots__ = ("_data", "_frame", "_framed", "kind", "payload", "position", "topic")

    def __init__(self, position: int, topic: str, kind: str, payload_json: str) -> None:
        self.position = position
        self.topic = topic
        self.kind = kind
        self.payload = payload_json
        self._frame: str | None = None
        self._data: bytes | None = None
        self._framed: bytes | None = None

    @property
    def frame(self) -> str:
        frame = self._frame
        if frame is None:
            frame = self._frame = encode_change(self.topic, self.position, self.kind, self.payload)
        return frame

    @property
    def data(self) -> bytes:
        data = self._data
        if data is None:
            data = self._data = self.frame.encode()  # once for every receiver
        return data

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def framed(self) -> bytes:
        """The websocket text frame (unmasked, no extension) carrying `data`: built once,
        written as is to every socket that negotiated no extension."""
        framed = self._framed
        if framed is None:
            framed = self._framed = Frame(Opcode.TEXT, self.data).serialize(mask=False)
        return framed

    def wire(self) -> list[Any]:
        """The compact form sent through Redis: [position, topic, kind, payload json]."""
        return [self.position, self.topic, self.kind, self.payload]

    def __repr__(self) -> str:
        return f"Change({self.position}, {self.topic!r}, {self.kind!r})"


@dataclass(frozen=True, slots=True)
class Batch:
    after: int
    upto: int
    changes: tuple[Change, ...] | None

    @property
    def doorbell(self) -> bool:
        return self.changes is None


# -- reading the change log ----------------------------------------------------------
def read_watermark(conn: psycopg.Connection[Any]) -> int:
    """The position up to which the change log is complete (0 before any view exists).

    `conn` is in autocommit mode (or inside a transaction the caller owns)."""
    try:
        row = conn.execute(WATERMARK_SQL).fetchone()  # type: ignore[arg-type]
    except psycopg.errors.UndefinedTable:
        return 0
    return _first_int(row)


async def read_next(
    conn: psycopg.AsyncConnection[Any], after: int, limit: int
) -> tuple[int, list[Change]]:
    """(watermark, up to `limit` changes above `after` and at most the watermark)."""
    try:
        cur = await conn.execute(NEXT_SQL, {"after": after, "limit": limit})  # type: ignore[arg-type]
        rows = await cur.fetchall()
    except psycopg.errors.UndefinedTable:
        return 0, []
    watermark = _first_int(rows[0]) if rows else 0
    return watermark, [Change(*row[1:]) for row in rows if row[1] is not None]


def _first_int(row: Any) -> int:
    if row is None:
        return 0
    value = next(iter(row.values())) if isinstance(row, dict) else row[0]
    return 0 if value is None else int(value)


def read_range(
    conn: psycopg.Connection[Any],
    after: int,
    upto: int,
    topics: Sequence[str] | None = None,
    page: int = 5000,
) -> list[Change]:
    """Every change with `after < position <= upto` (of `topics`, or all), in order."""
    found: list[Change] = []
    key: tuple[int, str] = (after, "\uffff")  # after every topic at position `after`
    while True:
        rows = conn.execute(RANGE_SQL, _range_params(key, upto, topics, page)).fetchall()
        found.extend(_changes(rows))
        if len(rows) < page:
            return found
        key = (found[-1].position, found[-1].topic)


def _range_params(
    key: tuple[int, str], upto: int, topics: Sequence[str] | None, page: int
) -> dict[str, Any]:
    return {
        "after": key[0],
        "after_topic": key[1],
        "upto": upto,
        "topics": None if topics is None else list(topics),
        "limit": page,
    }


def _changes(rows: Iterable[Any]) -> list[Change]:
    out = []
    for row in rows:
        if isinstance(row, dict):
            out.append(Change(row["position"], row["topic"], row["kind"], row["payload"]))
        else:
            out.append(Change(*row))
    return out


# -- backends ------------------------------------------------------------------------
class BatchStream:
    """One consumer's bounded queue of batches (oldest dropped on overflow)."""

    def __init__(self, capacity: int) -> None:
        self._queue: deque[Batch] = deque(maxlen=capacity)
        self._waiter: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self.dropped = 0

    def put(self, batch: Batch) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(batch)
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The backend's listener died: the consumer gets `error` at its next `get`."""
        self._failure = error
        self._wake()

    async def get(self, timeout: float | None = None) -> Batch | None:
        """The next batch, or None after `timeout` seconds without one."""
        if not self._queue and self._failure is None:
            self._waiter = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._waiter, timeout)
            self._waiter = None
        if self._failure is not None:
            raise self._failure
        return self._queue.popleft() if self._queue else None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class FanoutBackend(ABC):
    """Carries batches from the relay to every hub process. Use as an async context."""

    capacity = 1024

    def __init__(self) -> None:
        self._streams: set[BatchStream] = set()

    async def __aenter__(self) -> FanoutBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @abstractmethod
    async def publish(self, batch: Batch) -> None:
        """Send `batch` to every subscribed stream (of every process)."""

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[BatchStream]:
        stream = BatchStream(self.capacity)
        self._streams.add(stream)
        try:
            yield stream
        finally:
            self._streams.discard(stream)

    def _deliver(self, batch: Batch) -> None:
        for stream in self._streams:
            stream.put(batch)

    def _fail(self, error: BaseException) -> None:
        for stream in self._streams:
            stream.fail(error)


class InProcessFanout(FanoutBackend):
    """One process, no Redis: the relay's batches go straight to the local streams."""

    async def publish(self, batch: Batch) -> None:
        self._deliver(batch)

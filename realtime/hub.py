"""The hub: topics → subscribed connections, snapshot-then-stream, resume, gap refill.

One `Hub` per process. It consumes the fan-out backend's batches (see
`realtime.fanout`), keeps `head` (the change-log position up to which it has
dispatched everything), and hands each change to the subscriptions of its
topic. A subscription delivers a change only if its position is above the
last one it delivered, so positions strictly increase per topic per
connection whatever path a change took (live batch, refill, replay).

Subscribing (`Hub.open`, or `async with hub.subscribe(...)`) registers the
subscription first, in buffering mode, then reads from PostgreSQL: the
snapshot with its position P in one REPEATABLE READ transaction, or the change
rows after `since`. Live changes that arrive meanwhile wait in the buffer
(bounded: past the limit it is dropped and the rows are read again), and are
flushed, minus those already covered, before the subscription goes live.

Overflow policies: a connection's `Outbox` is bounded in bytes; live changes
past the limit close the connection with 4001 (the client resumes with
`since`). Snapshot and replay frames wait for room instead (back-pressure on
the subscriber that asked for them).

Credentials: a connection holds a `Credential` (who, a JWT's `exp`, a personal
access token's id). The session (`realtime.ws`) closes it at `exp`; the
`RevocationWatcher` reads the event store's `AccessToken.Revoked` events every
`revocation_poll_s` on every node and kills the outboxes of the connections
that hold a revoked token (close 4401).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NoReturn
from uuid import UUID

from psycopg import sql
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from domain.errors import DomainError
from domain.user import AccessToken, hash_token
from projections.reachability import database_down
from realtime.errors import (
    ForbiddenError,
    UnauthenticatedError,
    UnrecoverablePositionError,
)
from realtime.fanout import Batch, Change, FanoutBackend, read_range, read_watermark
from realtime.protocol import Subscribed, split_topic

if TYPE_CHECKING:
    import psycopg

    from domain.studio import Studio
    from realtime.auth import Authenticator, Principal

log = logging.getLogger("darkroom.realtime.hub")
MIB = 1024 * 1024
# How long a snapshot waits for the subscriber's own last write (then it is taken anyway).
SESSION_WAIT_S = 10.0


@dataclass(frozen=True)
class HubSettings:
    """Knobs of the websocket hub; `from_env()` reads `DARKROOM_WS_<FIELD>` (upper-cased)."""

    queue_bytes: int = MIB
    auth_timeout_s: float = 5.0
    ping_interval_s: float = 25.0
    idle_timeout_s: float = 60.0
    max_subscriptions: int = 200
    max_bad_frames: int = 20
    replay_page: int = 500
    poll_s: float = 0.5
    heartbeat_s: float = 1.0
    stale_after_s: float = 3.0
    leader_retry_s: float = 0.5
    pool_size: int = 4
    revocation_poll_s: float = 0.25
    redis_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> HubSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"DARKROOM_WS_{f.name.upper()}")
            if raw is None and f.name == "redis_url":
                raw = env.get("REDIS_URL") or None
            if raw is not None:
                values[f.name] = raw if f.name == "redis_url" else _cast(f.default, raw)
        values.update(overrides)
        return cls(**values)


def _cast(default: object, raw: str) -> object:
    return int(raw) if isinstance(default, int) else float(raw)


# -- per connection ------------------------------------------------------------------
class Outbox:
    """A connection's outgoing frames, bounded in bytes (see the module docstring).

    The writer sends `frames[0]`, then calls `sent()`: a frame is counted until it
    has left, so the bound covers the frame a stalled socket is stuck on.
    """

    __slots__ = ("_loop", "_room", "_waiter", "closed", "dead", "frames", "limit", "pushed", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frames: deque[tuple[str, int, bool]] = deque()
        self.size = 0  # bytes queued
        self.pushed = 0  # of which live changes
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self.dead: asyncio.Future[str] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None

    def push(self, frame: str, size: int) -> None:
        """A live frame: never waits; past the limit the connection is condemned."""
        if self.closed:
            return
        if self.pushed + size > self.limit:
            self.kill("slow_consumer")
            return
        self.frames.append((frame, size, True))
        self.size += size
        self.pushed += size
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set_result(None)

    @property
    def full(self) -> bool:
        """No room for a pulled frame: `put` waits (so the reader calling it does too)."""
        return self.size >= self.limit

    async def put(self, frame: str, size: int | None = None) -> None:
        """A pulled frame (reply, snapshot, replay): waits while the queue is full."""
        size = len(frame.encode()) if size is None else size
        while self.size >= self.limit and not self.closed:
            self._room = self._loop.create_future()
            await self._room
        if self.closed:
            raise ConnectionError("the connection is closing")
        self.frames.append((frame, size, False))
        self.size += size
        self._wake()

    async def wait(self) -> None:
        """Until there is a frame to send (or the outbox is killed)."""
        if not self.frames and not self.closed:
            self._waiter = self._loop.create_future()
            await self._waiter

    async def next(self) -> str:
        """The oldest frame, left in place (and counted) until `sent()`."""
        while not self.frames:
            await self.wait()
        return self.frames[0][0]

    def sent(self) -> None:
        if not self.frames:  # killed while the frame was on its way
            return
        _, size, live = self.frames.popleft()
        self.size -= size
        if live:
            self.pushed -= size
        room = self._room
        if room is not None and self.size < self.limit:
            self._room = None
            room.set_result(None)

    def kill(self, reason: str) -> None:
        """Stop accepting frames; the connection's owner closes with `reason`."""
        if self.closed:
            return
        self.closed = True
        self.frames.clear()
        self.size = self.pushed = 0
        if not self.dead.done():
            self.dead.set_result(reason)
        for future in (self._room, self._waiter):
            if future is not None and not future.done():
                future.set_result(None)
        self._room = self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set_result(None)


class Subscription:
    """One topic on one connection: delivers each position above `last`, once."""

    __slots__ = ("buffer", "buffer_bytes", "buffer_lost", "last", "outbox", "topic")

    def __init__(self, topic: str, outbox: Outbox) -> None:
        self.topic = topic
        self.outbox = outbox
        self.last = -1
        self.buffer: list[Change] | None = []  # not None while catching up
        self.buffer_bytes = 0
        self.buffer_lost = False

    def deliver(self, change: Change) -> None:
        buffer = self.buffer
        if buffer is not None:
            self._hold(buffer, change)
        elif change.position > self.last:
            self.last = change.position
            self.outbox.push(change.frame, change.size)

    def _hold(self, buffer: list[Change], change: Change) -> None:
        if self.buffer_lost:
            return
        self.buffer_bytes += change.size
        if self.buffer_bytes > self.outbox.limit:
            buffer.clear()
            self.buffer_lost = True  # the catch-up reads these rows again
        else:
            buffer.append(change)


# -- credentials ---------------------------------------------------------------------
@dataclass(eq=False)
class Credential:
    """What a connection is authenticated with, and what ends it: a JWT's `exp` (unix
    seconds), or the revocation of the personal access token `token_id`."""

    principal: Principal
    token: str = field(repr=False)
    expires_at: float | None = None
    token_id: UUID | None = None

    def expired(self, now: float | None = None) -> bool:
        # PyJWT's rule: a token is expired once `exp <= now`.
        return self.expires_at is not None and self.expires_at <= (
            time.time() if now is None else now
        )


class RevocationWatcher:
    """Learns of revoked personal access tokens on every node, from the event store.

    Every `poll_s` it reads `max(notification_id)` and the `AccessToken.Revoked`
    events after the last position it read (an index range scan of the events
    since the previous poll: the cost per node does not grow with connections).
    Every id below a committed one is committed (the recorder's table lock), so
    nothing is skipped. An outbox watching a revoked token is killed with
    `token_revoked`. `watch(token_id, outbox, since)` also checks the revocations
    seen after `since` (the position read before the token was checked), so a
    revocation that lands between the check and `watch` is not missed.
    """

    RECENT_S = 300.0  # revocations remembered for `watch`'s look-back
    CHUNK = 100_000  # events per query when catching up after an outage

    def __init__(self, db: Callable[..., Any], table: sql.Composable | None, poll_s: float) -> None:
        self._db = db
        self.table = table
        self.poll_s = poll_s
        self.position = 0
        self.watched: dict[UUID, set[Outbox]] = {}
        self.recent: deque[tuple[int, UUID, float]] = deque()
        self.polls = 0
        self.revocations = 0
        self.closed = 0
        self.failing = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RevocationWatcher:
        if self.table is not None:
            self.position = await self._db(read_head, self.table)
            self._task = asyncio.create_task(self._run(), name="hub-revocations")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                caught_up = await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Fail open (the sessions stay up; so does the change stream they get):
                # the next poll reads the same range again, nothing is skipped.
                if not self.failing:
                    log.exception(
                        "hub: reading token revocations failed; retrying every %s s", self.poll_s
                    )
                self.failing, caught_up = True, True
            else:
                if self.failing:
                    log.warning("hub: reading token revocations works again")
                self.failing = False
            if caught_up:
                await asyncio.sleep(self.poll_s)

    async def poll(self) -> bool:
        """One read of the log; True when it reached the head."""
        assert self.table is not None
        upto, head, revoked = await self._db(
            read_revocations, self.table, self.position, self.CHUNK
        )
        self.polls += 1
        now = time.monotonic()
        for position, token_id in revoked:
            self.revocations += 1
            self.recent.append((position, token_id, now))
            self._revoked(token_id)
        while self.recent and now - self.recent[0][2] > self.RECENT_S:
            self.recent.popleft()
        self.position = max(self.position, upto)
        return upto >= head

    def _revoked(self, token_id: UUID) -> None:
        for outbox in self.watched.pop(token_id, ()):
            self.closed += 1
            outbox.kill("token_revoked")

    def watch(self, token_id: UUID, outbox: Outbox, since: int) -> None:
        if any(tid == token_id and position > since for position, tid, _ in self.recent):
            self.closed += 1
            outbox.kill("token_revoked")
            return
        self.watched.setdefault(token_id, set()).add(outbox)

    def unwatch(self, token_id: UUID, outbox: Outbox) -> None:
        outboxes = self.watched.get(token_id)
        if outboxes is not None:
            outboxes.discard(outbox)
            if not outboxes:
                del self.watched[token_id]


def _events_table(studio: Any) -> sql.Composable | None:
    """The event store's table (schema-qualified), or None for a studio without one."""
    recorder = getattr(studio, "recorder", None)
    table = getattr(recorder, "events_table_name", None)
    schema = getattr(getattr(recorder, "datastore", None), "schema", None)
    if not isinstance(table, str):
        return None
    return (
        sql.Identifier(schema, table)
        if isinstance(schema, str) and schema
        else sql.Identifier(table)
    )


# -- the hub -------------------------------------------------------------------------
class _TokenRequest:
    """What `Authenticator.authenticate` reads from a request: its headers."""

    def __init__(self, token: str) -> None:
        self.headers = {"authorization": f"Bearer {token}"}


class Hub:
    """See the module docstring. Use as an async context manager (starts the consumer)."""

    def __init__(
        self,
        settings: HubSettings,
        conninfo: str,
        schema: str,
        backend: FanoutBackend,
        studio: Studio,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.settings = settings
        self.conninfo = conninfo
        self.schema = schema
        self.backend = backend
        self.studio = studio
        self.authenticator = authenticator
        self.topics: dict[str, set[Subscription]] = {}
        # Signs media locations in snapshots and changes (realtime.api.media.MediaUrls;
        # set by `hub_lifespan` from the app): the change log keeps bare locations.
        self.media_urls: Any = None
        self.head = 0
        self.refills = 0
        self.pool: ConnectionPool[Any] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.revocations = RevocationWatcher(
            self._db, _events_table(studio), settings.revocation_poll_s
        )

    async def __aenter__(self) -> Hub:
        from projections.db import pool_kwargs

        self.pool = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self.settings.pool_size,
            kwargs=pool_kwargs(self.schema),
            open=False,
        )
        await run_in_threadpool(self.pool.open)
        self.head = await self._db(read_watermark)
        self._consumer = asyncio.create_task(self._consume(), name="hub-consumer")
        await asyncio.wait_for(self._ready.wait(), 30)
        await self.revocations.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.revocations.__aexit__()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        if self.pool is not None:
            await run_in_threadpool(self.pool.close)

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self.pool is not None, "hub used outside its context"
        pool = self.pool

        def call() -> Any:
            with pool.connection() as conn:
                return fn(conn, *args)

        return await run_in_threadpool(call)

    # -- the live stream -------------------------------------------------------------
    async def _consume(self) -> None:
        async with self.backend.subscribe() as stream:
            self._ready.set()
            while True:
                try:
                    batch = await stream.get(timeout=self.settings.stale_after_s)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception(
                        "hub: the fan-out backend failed; reading the change log "
                        "every %s s from now on",
                        self.settings.poll_s,
                    )
                    await self._poll_forever()
                await self._step(batch)

    async def _step(self, batch: Batch | None) -> None:
        try:
            await (self._catch_up_head() if batch is None else self._apply(batch))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # PostgreSQL failed us: head did not move, so the next batch (or the
            # staleness check) reads the same range again. Clients see a delay, no gap.
            if database_down(error):  # said once, by the database watch
                log.debug("hub: the database is unreachable; retrying")
            else:
                log.exception("hub: reading the change log failed; retrying")
            await asyncio.sleep(self.settings.poll_s)

    async def _poll_forever(self) -> NoReturn:
        while True:
            await asyncio.sleep(self.settings.poll_s)
            await self._step(None)

    async def _apply(self, batch: Batch) -> None:
        if batch.upto <= self.head:
            return
        if batch.changes is None or batch.after > self.head:
            changes = await self._refill(self.head, batch.upto)
        else:
            changes = [c for c in batch.changes if c.position > self.head]
        self.head = max(self.head, batch.upto)
        self.dispatch(changes)

    async def _catch_up_head(self) -> None:
        """No batch for a while (lost message, no relay): read the change log directly."""
        upto = await self._db(read_watermark)
        if upto > self.head:
            changes = await self._refill(self.head, upto)
            self.head = max(self.head, upto)
            self.dispatch(changes)

    async def _refill(self, after: int, upto: int) -> list[Change]:
        topics = list(self.topics)
        if not topics:
            return []
        self.refills += 1
        found: list[Change] = await self._db(read_range, after, upto, topics)
        return found

    def dispatch(self, changes: list[Change] | tuple[Change, ...]) -> None:
        """Hand each change to its topic's subscriptions (never waits)."""
        topics = self.topics
        for change in changes:
            subs = topics.get(change.topic)
            if subs:
                change = self._signed(change)
                for sub in subs:
                    sub.deliver(change)

    def _signed(self, change: Change) -> Change:
        """The change with its media locations as signed URLs: encoded again, once for every
        receiver on this node, only when its payload names a media file."""
        if self.media_urls is None or '"/media/' not in change.frame:
            return change
        return Change(
            change.position, change.topic, change.kind, self.media_urls.sign_text(change.wire()[3])
        )

    # -- who may see what ------------------------------------------------------------
    async def authenticate(self, token: str) -> Principal:
        """The caller behind `token` (JWT, personal access token or service key)."""
        if self.authenticator is None:
            raise UnauthenticatedError("this hub has no authenticator", code="invalid_token")
        return await self.authenticator.authenticate(_TokenRequest(token))  # type: ignore[arg-type]

    async def credential(self, token: str) -> Credential:
        """`authenticate`, plus what ends the credential: a JWT's `exp`, a PAT's id."""
        principal = await self.authenticate(token)
        if principal.via == "jwt":
            assert self.authenticator is not None
            exp = self.authenticator.jwt_claims(token)["exp"]
            assert isinstance(exp, int | float)
            return Credential(principal, token, expires_at=float(exp))
        if principal.via == "pat":
            return Credential(
                principal, token, token_id=AccessToken.id_for_digest(hash_token(token))
            )
        return Credential(principal, token)

    async def recheck(self, credential: Credential) -> str | None:
        """None while `credential` still holds, else why not (a close-code name): a JWT
        past its `exp`, a personal access token revoked (read now, not the watcher's
        last poll: one read of the token's events)."""
        if credential.expired():
            return "token_expired"
        if credential.token_id is not None:
            user = await run_in_threadpool(self.studio.user_for_token, credential.token)
            if user is None or user != credential.principal.user_id:
                return "token_revoked"
        return None

    async def authorise(self, principal: Principal, topic: str) -> None:
        """Raises `ForbiddenError` unless `principal` may see `topic` (one check per topic)."""
        kind, key = split_topic(topic)
        user = principal.user_id
        if principal.is_service and user is None:
            return
        if kind == "credits":
            if key != user:
                raise ForbiddenError(f"{topic} is not yours")
            return
        load = {
            "project": self.studio.project,
            "tasks": self.studio.project,
            "shot": self.studio.shot,
            "generation": self.studio.generation,
        }[kind]
        try:
            await run_in_threadpool(load, key, user)
        except DomainError:
            raise ForbiddenError(f"{topic} does not exist or is not yours") from None

    # -- subscribing -----------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def subscribe(
        self, topic: str, outbox: Outbox, *, since: int | None = None, ref: Any = None
    ) -> AsyncIterator[Subscription]:
        """Subscribed for the duration of the block (the caller authorised the topic)."""
        sub = await self.open(topic, outbox, since=since, ref=ref)
        try:
            yield sub
        finally:
            self.close(sub)

    async def open(
        self,
        topic: str,
        outbox: Outbox,
        *,
        since: int | None = None,
        ref: Any = None,
        at_least: int = 0,
    ) -> Subscription:
        """Queue `subscribed` (+ snapshot or replayed changes) and go live. A snapshot is
        taken once the views reached `at_least` (the caller's last acknowledged write), or
        after `SESSION_WAIT_S` as of where they are (the write then follows as a change)."""
        if since is None and at_least > self.head:
            await self._reach(at_least)
        sub = Subscription(topic, outbox)
        self.topics.setdefault(topic, set()).add(sub)
        try:
            if since is None:
                await self._start_from_snapshot(sub, ref)
            else:
                await self._start_from(sub, since, ref)
            await self._go_live(sub)
        except BaseException:
            self.close(sub)
            raise
        return sub

    async def session_position(self, principal: Principal) -> int:
        """`principal`'s last acknowledged write (read-your-own-writes, realtime/sessions.py)."""
        sessions = getattr(self.authenticator, "sessions", None)
        return 0 if sessions is None else int(await sessions.position(principal))

    async def _reach(self, position: int) -> None:
        """Until the change log's watermark (`head`, advanced by the fan-out) reaches
        `position`, at most `SESSION_WAIT_S`."""
        deadline = time.monotonic() + SESSION_WAIT_S
        while self.head < position and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def close(self, sub: Subscription) -> None:
        subs = self.topics.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.topics[sub.topic]

    async def _start_from_snapshot(self, sub: Subscription, ref: Any) -> None:
        position, snapshot = await self._db(take_snapshot, sub.topic)
        sub.last = position
        frame = Subscribed(
            topic=sub.topic, ref=ref, position=position, recovered=False, snapshot=snapshot
        ).encode()
        if self.media_urls is not None:
            frame = self.media_urls.sign_text(frame)
        await sub.outbox.put(frame)

    async def _start_from(self, sub: Subscription, since: int, ref: Any) -> None:
        oldest, watermark = await self._db(retained_range)
        if since + 1 < oldest or since > watermark:
            raise UnrecoverablePositionError(
                f"position {since} is outside the retained change log "
                f"[{oldest - 1}, {watermark}]; subscribe again without since"
            )
        sub.last = since
        await sub.outbox.put(
            Subscribed(topic=sub.topic, ref=ref, position=since, recovered=True).encode()
        )
        await self._replay(sub)

    async def _replay(self, sub: Subscription) -> None:
        """Every row of the topic after `sub.last`, up to the watermark, in order."""
        while True:
            changes, done = await self._db(
                read_topic, sub.topic, sub.last, self.settings.replay_page
            )
            for change in map(self._signed, changes):
                await sub.outbox.put(change.frame, change.size)
                sub.last = change.position
            if done:
                return

    async def _go_live(self, sub: Subscription) -> None:
        while sub.buffer_lost:
            sub.buffer, sub.buffer_bytes, sub.buffer_lost = [], 0, False
            await self._replay(sub)
        held, sub.buffer = sub.buffer or [], None
        for change in held:
            sub.deliver(change)

    # -- introspection ---------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        watcher = self.revocations
        return {
            "head": self.head,
            "topics": len(self.topics),
            "refills": self.refills,
            "subscriptions": sum(len(s) for s in self.topics.values()),
            "revocation_polls": watcher.polls,
            "revocations_seen": watcher.revocations,
            "closed_by_revocation": watcher.closed,
            "watched_tokens": len(watcher.watched),
        }


# -- PostgreSQL reads (blocking; run off the event loop) ---------------------------
REVOKED_TOPIC = AccessToken.Revoked.TOPIC  # "darkroom.access_token.revoked"


def read_head(conn: psycopg.Connection[Any], table: sql.Composable) -> int:
    """The event store's last notification id (0 when empty)."""
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(notification_id), 0) AS head FROM {}").format(table)
    ).fetchone()
    return int(row["head"]) if row else 0


def read_revocations(
    conn: psycopg.Connection[Any], table: sql.Composable, after: int, chunk: int
) -> tuple[int, int, list[tuple[int, UUID]]]:
    """(upto, head, [(position, token id)]): the tokens revoked in (after, upto], with
    upto = min(head, after + chunk). Two index-backed statements, no lock."""
    head = read_head(conn, table)
    upto = min(head, after + chunk)
    if upto <= after:
        return after, head, []
    rows = conn.execute(
        sql.SQL(
            "SELECT notification_id, originator_id FROM {} WHERE notification_id > %s "
            "AND notification_id <= %s AND topic = %s ORDER BY notification_id"
        ).format(table),
        (after, upto, REVOKED_TOPIC),
        prepare=True,
    ).fetchall()
    return upto, head, [(int(r["notification_id"]), UUID(str(r["originator_id"]))) for r in rows]


def _all_pages(conn: psycopg.Connection[Any], project_id: str) -> list[dict[str, Any]]:
    from projections.gallery import gallery_page

    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = gallery_page(conn, project_id, limit=200, cursor=cursor)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _snapshot_of(conn: psycopg.Connection[Any], kind: str, key: str) -> Any:
    from projections import credits, gallery, projects, shots, tasks, variants

    if kind == "project":
        return {
            "project": projects.project_row(conn, key),
            "generations": _all_pages(conn, key),
            "shots": shots.shots_of_project(conn, key),
        }
    if kind == "shot":
        return {"shot": shots.shot_row(conn, key)}
    if kind == "generation":
        return {
            "generation": gallery.generation_row(conn, key),
            "variants": variants.variants_of(conn, key),
        }
    if kind == "tasks":
        return tasks.task_board(conn, key, limit=1000)
    return {
        "balance": credits.balance_of(conn, key),
        "ledger": credits.ledger_of(conn, key, limit=100),
    }


def take_snapshot(conn: psycopg.Connection[Any], topic: str) -> tuple[int, Any]:
    """The topic's view and the position P it is exactly as of (one repeatable read)."""
    from projections.reading import snapshot

    kind, key = split_topic(topic)
    with snapshot(conn) as positions:
        position = min(positions.values(), default=0)
        return position, _snapshot_of(conn, kind, key)


def retained_range(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(oldest retained position, watermark): `since` must lie in [oldest - 1, watermark]."""
    from projections.changelog import oldest_retained_position

    return oldest_retained_position(conn), read_watermark(conn)


def read_topic(
    conn: psycopg.Connection[Any], topic: str, after: int, limit: int
) -> tuple[list[Change], bool]:
    """One page of the topic's rows after `after`, none past the watermark; (rows, done)."""
    from projections.changelog import changes_since
    from projections.reading import snapshot

    with snapshot(conn) as positions:
        watermark = min(positions.values(), default=0)
        rows = changes_since(conn, [topic], after, limit, raw=True)
    kept = [r for r in rows if r["position"] <= watermark]
    # The stored text, as the relay sends it live: no parse and re-dump per row.
    changes = [Change(r["position"], r["topic"], r["kind"], r["payload"]) for r in kept]
    return changes, len(rows) < limit or len(kept) < len(rows)

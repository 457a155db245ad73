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

A connection's `Outbox` and its `Subscription`s are in `realtime.outbox`;
credentials, revocations and who may see what in `realtime.credentials`;
the PostgreSQL reads of a subscription in `realtime.snapshots`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from projections.reachability import database_down
from realtime.credentials import Credential, Gate, RevocationWatcher, events_table
from realtime.defaults import HubSettings
from realtime.errors import UnrecoverablePositionError
from realtime.fanout import Batch, Change, FanoutBackend, read_range, read_watermark
from realtime.outbox import Outbox, Subscription, deliver
from realtime.protocol import Subscribed
from realtime.snapshots import read_topic, retained_range, take_snapshot

if TYPE_CHECKING:
    from domain.studio import Studio
    from realtime.auth import Authenticator, Principal

log = logging.getLogger("darkroom.realtime.hub")
# How long a snapshot waits for the subscriber's own last write (then it is taken anyway).
SESSION_WAIT_S = 10.0


# -- the hub -------------------------------------------------------------------------
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
        self.gate = Gate(studio, authenticator)
        self.revocations = RevocationWatcher(
            self._db, events_table(studio), settings.revocation_poll_s
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
        """Hand each change to its topic's subscriptions (never waits). Changes that come
        together reach each connection together: one write per socket for the batch."""
        topics = self.topics
        if len(changes) == 1:
            change = changes[0]
            subs = topics.get(change.topic)
            if subs:
                deliver(subs, self._signed(change))
            return
        together: dict[Outbox, list[Change]] = {}
        for change in changes:
            subs = topics.get(change.topic)
            if subs:
                change = self._signed(change)
                for sub in subs:
                    if sub.admits(change):
                        together.setdefault(sub.outbox, []).append(change)
        for outbox, held in together.items():
            outbox.push_changes(held)

    def _signed(self, change: Change) -> Change:
        """The change with its media locations as signed URLs: encoded again, once for every
        receiver on this node, only when its payload names a media file."""
        if self.media_urls is None or '"/media/' not in change.frame:
            return change
        return Change(
            change.position, change.topic, change.kind, self.media_urls.sign_text(change.wire()[3])
        )

    # -- who may see what (realtime.credentials.Gate) ---------------------------------
    async def authenticate(self, token: str) -> Principal:
        return await self.gate.authenticate(token)

    async def credential(self, token: str) -> Credential:
        return await self.gate.credential(token)

    async def recheck(self, credential: Credential) -> str | None:
        return await self.gate.recheck(credential)

    async def authorise(self, principal: Principal, topic: str) -> None:
        await self.gate.authorise(principal, topic)

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

"""What a connection is authenticated with, and what ends it.

A connection holds a `Credential` (who, a JWT's `exp`, a personal access token's
id). The session (`realtime.ws`, by way of `realtime.connection`) closes it at
`exp`; the `RevocationWatcher` reads the event store's `AccessToken.Revoked`
events every `revocation_poll_s` on every node and kills the outboxes of the
connections that hold a revoked token (close 4401). The `Gate` checks tokens
(the HTTP `Authenticator`'s code), re-checks a credential, and says who may see
which topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import sql
from starlette.concurrency import run_in_threadpool

from domain.errors import DomainError
from domain.services.base import as_uuid
from domain.user import AccessToken, hash_token
from realtime.errors import ForbiddenError, UnauthenticatedError
from realtime.protocol import split_topic

if TYPE_CHECKING:
    import psycopg

    from domain.studio import Studio
    from realtime.auth import Authenticator, Principal
    from realtime.outbox import Outbox

log = logging.getLogger("darkroom.realtime.hub")


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


def events_table(studio: Any) -> sql.Composable | None:
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


# -- tokens and topics ------------------------------------------------------------
class _TokenRequest:
    """What `Authenticator.authenticate` reads from a request: its headers."""

    def __init__(self, token: str) -> None:
        self.headers = {"authorization": f"Bearer {token}"}


class Gate:
    """Who a token is, whether a credential still holds, who may see which topic."""

    def __init__(self, studio: Studio, authenticator: Authenticator | None) -> None:
        self.studio = studio
        self.authenticator = authenticator

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
            await run_in_threadpool(load, as_uuid(key, f"{kind} id"), user)
        except DomainError:
            raise ForbiddenError(f"{topic} does not exist or is not yours") from None


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

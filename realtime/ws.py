"""`GET /ws`: the websocket endpoint of the hub, and how to mount it.

    app = create_app(config, extra_routes=hub_routes(), extra_lifespans=[hub_lifespan()])

`hub_lifespan()` builds the fan-out backend (Redis when `REDIS_URL` is set,
in process otherwise), the change-log relay and the `Hub`, after the edge's
own resources (`app.state.studio`, `app.state.auth`) exist; `hub_routes()` is
the `/ws` route. The protocol is in `docs/REALTIME.md` and `realtime.protocol`.

A connection is three tasks: the reader (frames in, handled in order), the
writer (drains the connection's `Outbox`) and the heartbeat (a `ping` frame
every `ping_interval_s`; a client silent for `idle_timeout_s` is dropped).
The first to finish decides how the socket closes.

A session lasts as long as its credential: a timer closes it (4401
`token_expired`) at its JWT's `exp`, the hub's `RevocationWatcher` (4401
`token_revoked`) when its personal access token is revoked, and every
`subscribe` re-checks the credential first. A later `auth` frame with a token of
the same user replaces the credential (answered `authenticated`), extending the
session; another user's token is refused (`user_mismatch`) and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from projections.reachability import database_down
from realtime.errors import EdgeError
from realtime.fanout import ChangeLogRelay, FanoutBackend, InProcessFanout, RedisFanout
from realtime.hub import Credential, Hub, HubSettings, Outbox, Subscription
from realtime.metrics import WS_CHANGES_SENT, WS_CLOSED, WS_CONNECTIONS
from realtime.protocol import (
    CLOSE_CODES,
    PING,
    PONG,
    Auth,
    Authenticated,
    BadFrameError,
    Error,
    Ping,
    Pong,
    Ready,
    Subscribe,
    Unsubscribe,
    Unsubscribed,
    parse_client_frame,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import Receive, Scope, Send

    from realtime.auth import Principal

log = logging.getLogger("darkroom.realtime.ws")
DATABASE_DOWN_MESSAGE = "the database is unreachable right now; retry in a moment"
# Frames before `ready` (the `auth` frame): at most this many bytes, else closed 1009.
MAX_AUTH_FRAME = 16 * 1024
AUTH_FRAME_TOO_BIG = (1009, "frames before authentication are at most 16 KiB")
CHANGE_PREFIX = '{"type":"change",'  # how `encode_change` starts every change frame


# -- mounting --------------------------------------------------------------------------
def hub_routes(path: str = "/ws") -> list[BaseRoute]:
    return [WebSocketRoute(path, HubEndpoint(), name="hub")]


def hub_lifespan(
    settings: HubSettings | None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[Hub]]:
    """An `extra_lifespans` entry for `create_app`: runs the hub with the app."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Hub]:
        config = app.state.config
        redis = {"redis_url": config.redis_url} if config.redis_url else {}
        chosen = settings or HubSettings.from_env(**redis)
        async with run_hub(
            chosen,
            config.conninfo,
            config.schema,
            app.state.studio,
            getattr(app.state, "auth", None),
        ) as hub:
            hub.media_urls = getattr(app.state, "media_urls", None)
            app.state.hub = hub
            yield hub

    return lifespan


@contextlib.asynccontextmanager
async def run_hub(
    settings: HubSettings, conninfo: str, schema: str, studio: Any, authenticator: Any
) -> AsyncIterator[Hub]:
    """Backend, hub and relay, started in that order and stopped in reverse."""
    backend: FanoutBackend = (
        RedisFanout(settings.redis_url, f"darkroom:changes:{schema}")
        if settings.redis_url
        else InProcessFanout()
    )
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(backend)
        hub = Hub(settings, conninfo, schema, backend, studio, authenticator)
        await stack.enter_async_context(hub)
        await stack.enter_async_context(
            ChangeLogRelay(
                conninfo,
                schema,
                backend,
                start_head=lambda: hub.head,
                exclusive=settings.redis_url is not None,
                poll_s=settings.poll_s,
                heartbeat_s=settings.heartbeat_s,
                retry_s=settings.leader_retry_s,
            )
        )
        yield hub


# -- the endpoint ----------------------------------------------------------------------
class HubEndpoint:
    """The `/ws` ASGI app. It keeps the raw ASGI `send` for the writer: change frames
    are the hot path of fan-out and skip `WebSocket.send`'s per-message state checks."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        hub: Hub = websocket.app.state.hub
        await websocket.accept()
        WS_CONNECTIONS.inc()
        try:
            found = await handshake(websocket, hub)
            if found is not None:
                credential, mark = found
                await Session(websocket, hub, credential, send, revocations_since=mark).run()
        finally:
            WS_CONNECTIONS.dec()
            if websocket.application_state != WebSocketState.DISCONNECTED:
                WS_CLOSED.labels("client").inc()  # it ended before we closed it


async def close(websocket: WebSocket, name: str) -> None:
    code = CLOSE_CODES[name]
    if websocket.application_state != WebSocketState.DISCONNECTED:
        WS_CLOSED.labels(str(code.code)).inc()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code.code, code.reason), 5)


async def handshake(websocket: WebSocket, hub: Hub) -> tuple[Credential, int] | None:
    """The caller, from `?token=` or an `auth` frame within `auth_timeout_s`; else closed.
    With it, the revocation watcher's position before the token was checked."""
    token = websocket.query_params.get("token")
    if token is None:
        token = await _auth_frame(websocket, hub.settings.auth_timeout_s)
        if token is None:
            return None
    mark = hub.revocations.position
    try:
        credential = await hub.credential(token)
    except EdgeError as error:
        await _send(websocket, Error(code=error.code, message=error.message).encode())
        await close(websocket, "bad_token")
        return None
    except Exception as error:
        if not database_down(error):
            raise
        await _send(
            websocket, Error(code="database_unavailable", message=DATABASE_DOWN_MESSAGE).encode()
        )
        await close(websocket, "database_unavailable")
        return None
    await _send(
        websocket,
        Ready(
            user_id=credential.principal.user_id, position=hub.head, expires_at=_epoch(credential)
        ).encode(),
    )
    return credential, mark


def _epoch(credential: Credential) -> int | None:
    exp = credential.expires_at
    return None if exp is None else int(exp)


async def _auth_frame(websocket: WebSocket, timeout: float) -> str | None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(websocket.receive(), max(remaining, 0.001))
        except TimeoutError:
            await close(websocket, "auth_timeout")
            return None
        if message["type"] == "websocket.disconnect":
            return None
        raw = message.get("text") or message.get("bytes") or b""
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_AUTH_FRAME:
            # Checked before parsing: a token is at most 8 KiB; a big first frame is
            # never an auth frame (and JSON-parsing megabytes from anyone is a gift).
            WS_CLOSED.labels(str(AUTH_FRAME_TOO_BIG[0])).inc()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(*AUTH_FRAME_TOO_BIG), 5)
            return None
        try:
            frame = parse_client_frame(raw)
        except BadFrameError as error:
            await _send(
                websocket,
                Error(
                    code="bad_request", message=str(error), topic=error.topic, ref=error.ref
                ).encode(),
            )
            continue
        if isinstance(frame, Auth):
            return frame.token
        await _send(
            websocket, Error(code="unauthenticated", message="send an auth frame first").encode()
        )
        await close(websocket, "bad_token")
        return None


async def _send(websocket: WebSocket, text: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(text)


class Session:
    """One authenticated connection: its outbox, its subscriptions, its three tasks,
    its credential and the timer that ends the session at the credential's `exp`."""

    def __init__(
        self,
        websocket: WebSocket,
        hub: Hub,
        credential: Credential,
        send: Send | None = None,
        *,
        revocations_since: int | None = None,
    ) -> None:
        self.websocket = websocket
        self.send = send or websocket.send
        self.hub = hub
        self.settings = hub.settings
        self.outbox = Outbox(hub.settings.queue_bytes)
        self.subscriptions: dict[str, Subscription] = {}
        self.last_heard = asyncio.get_running_loop().time()
        self.bad_frames = 0  # in a row
        self.credential = credential
        self._since = hub.revocations.position if revocations_since is None else revocations_since
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def principal(self) -> Principal:
        return self.credential.principal

    # -- the credential --------------------------------------------------------------
    def _hold(self, credential: Credential, since: int) -> None:
        """Run on `credential` from now on: watch its revocation, arm its expiry."""
        self._release()
        self.credential = credential
        if credential.token_id is not None:
            self.hub.revocations.watch(credential.token_id, self.outbox, since)
        self._arm()

    def _release(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.credential.token_id is not None:
            self.hub.revocations.unwatch(self.credential.token_id, self.outbox)

    def _arm(self) -> None:
        exp = self.credential.expires_at
        if exp is None or self.outbox.closed:
            return
        # A timer on the loop's monotonic clock, checked against the wall clock `exp` is
        # on when it fires (re-armed if it fired early or the clock was set back).
        self._expiry = asyncio.get_running_loop().call_later(
            max(exp - time.time(), 0.0), self._expire
        )

    def _expire(self) -> None:
        self._expiry = None
        if self.credential.expired():
            self.outbox.kill("token_expired")
        else:
            self._arm()

    async def run(self) -> None:
        self._hold(self.credential, self._since)
        try:
            await self._run()
        finally:
            self._release()

    async def _run(self) -> None:
        tasks: list[asyncio.Future[Any]] = [
            asyncio.create_task(self._read(), name="ws-reader"),
            asyncio.create_task(self._write(), name="ws-writer"),
            asyncio.create_task(self._heartbeat(), name="ws-heartbeat"),
        ]
        try:
            done, _ = await asyncio.wait(
                [*tasks, self.outbox.dead], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            for sub in self.subscriptions.values():
                self.hub.close(sub)
            self.subscriptions.clear()
        reason = self._reason(done)
        self.outbox.kill(reason or "closed")
        if reason is not None:
            await close(self.websocket, reason)

    def _reason(self, done: set[asyncio.Future[Any]]) -> str | None:
        """Why we close (a close-code name), or None when the client went away."""
        if self.outbox.dead.done():
            return self.outbox.dead.result()
        for task in done:
            if task is not self.outbox.dead and not task.cancelled():
                error = task.exception()
                if error is not None and not isinstance(error, WebSocketDisconnect | OSError):
                    log.error("ws session failed", exc_info=error)
                    return "going_away"
                result = task.result() if error is None else None
                if isinstance(result, str):
                    return result
        return None

    # -- the three tasks -------------------------------------------------------------
    async def _write(self) -> None:
        outbox, send, frames = self.outbox, self.send, self.outbox.frames
        while not outbox.closed:
            if frames:
                text = frames[0][0]
                await send({"type": "websocket.send", "text": text})
                outbox.sent()
                if text.startswith(CHANGE_PREFIX):
                    WS_CHANGES_SENT.inc()
            else:
                await outbox.wait()

    async def _heartbeat(self) -> str:
        loop = asyncio.get_running_loop()
        interval = min(self.settings.ping_interval_s, self.settings.idle_timeout_s)
        while True:
            await asyncio.sleep(interval)
            if loop.time() - self.last_heard > self.settings.idle_timeout_s:
                # With the outbox full, the reader is stuck queueing a reply (a pong)
                # and has not read what the client sent since: the client is not
                # silent, it does not read. That is a slow consumer (4001), not an
                # idle one (4002); a CI run once reported the latter.
                return "slow_consumer" if self.outbox.full else "idle_timeout"
            self.outbox.push(PING, len(PING))

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            self.last_heard = loop.time()
            await self._handle(message.get("text") or message.get("bytes") or b"")

    # -- frames ------------------------------------------------------------------------
    async def _handle(self, text: str | bytes) -> None:
        try:
            frame = parse_client_frame(text)
        except BadFrameError as error:
            self.bad_frames += 1
            if self.bad_frames > self.settings.max_bad_frames:
                self.outbox.kill("protocol_error")
                return
            await self._error("bad_request", str(error), error.topic, error.ref)
            return
        self.bad_frames = 0
        if isinstance(frame, Subscribe):
            await self._subscribe(frame)
        elif isinstance(frame, Unsubscribe):
            self._drop(frame.topic)
            await self.outbox.put(Unsubscribed(topic=frame.topic, ref=frame.ref).encode())
        elif isinstance(frame, Ping):
            await self.outbox.put(PONG)
        elif isinstance(frame, Pong):
            return
        elif isinstance(frame, Auth):
            await self._reauthenticate(frame.token)

    async def _reauthenticate(self, token: str) -> None:
        """A fresh token of the session's user replaces the credential (extends it)."""
        mark = self.hub.revocations.position
        try:
            credential = await self.hub.credential(token)
        except EdgeError as error:
            # The session keeps its current credential (and ends with it).
            await self._error(error.code, error.message)
            return
        except Exception as error:
            if not database_down(error):
                raise
            await self._error("database_unavailable", DATABASE_DOWN_MESSAGE)
            return
        user = self.credential.principal.user_id
        if credential.principal.user_id != user:
            owner = "the bare service key" if user is None else f"user {user}"
            await self._error(
                "user_mismatch",
                f"this connection belongs to {owner}; a "
                "token of another user is refused: open another connection",
            )
            return
        self._hold(credential, mark)
        await self.outbox.put(Authenticated(user_id=user, expires_at=_epoch(credential)).encode())

    async def _subscribe(self, frame: Subscribe) -> None:
        try:
            ended = await self.hub.recheck(self.credential)
        except Exception as error:
            if not database_down(error):
                raise
            # PostgreSQL is down: this topic is refused, the socket and its topics stay.
            await self._error("database_unavailable", DATABASE_DOWN_MESSAGE, frame.topic, frame.ref)
            return
        if ended is not None:
            self.outbox.kill(ended)  # closed 4401: the credential no longer holds
            return
        self._drop(frame.topic)  # subscribing again starts over
        if len(self.subscriptions) >= self.settings.max_subscriptions:
            await self._error(
                "too_many_subscriptions",
                f"at most {self.settings.max_subscriptions} topics per connection",
                frame.topic,
                frame.ref,
            )
            return
        try:
            await self.hub.authorise(self.principal, frame.topic)
            sub = await self.hub.open(
                frame.topic,
                self.outbox,
                since=frame.since,
                ref=frame.ref,
                at_least=await self.hub.session_position(self.principal),
            )
        except EdgeError as error:
            await self._error(error.code, error.message, frame.topic, frame.ref)
            return
        except ConnectionError:
            return
        except Exception as error:
            if database_down(error):
                await self._error(
                    "database_unavailable", DATABASE_DOWN_MESSAGE, frame.topic, frame.ref
                )
                return
            log.exception("subscribing to %s failed", frame.topic)
            await self._error(
                "unavailable", "the hub could not read this topic; retry", frame.topic, frame.ref
            )
            return
        self.subscriptions[frame.topic] = sub

    def _drop(self, topic: str) -> None:
        sub = self.subscriptions.pop(topic, None)
        if sub is not None:
            self.hub.close(sub)

    async def _error(
        self, code: str, message: str, topic: str | None = None, ref: Any = None
    ) -> None:
        await self.outbox.put(Error(code=code, message=message, topic=topic, ref=ref).encode())

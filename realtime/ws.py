"""`GET /ws`: the websocket endpoint of the hub, and how to mount it.

    app = create_app(config, extra_routes=hub_routes(), extra_lifespans=[hub_lifespan()])

`hub_lifespan()` builds the fan-out backend (Redis when `REDIS_URL` is set,
in process otherwise), the change-log relay and the `Hub`, after the edge's
own resources (`app.state.studio`, `app.state.auth`) exist; `hub_routes()` is
the `/ws` route. The protocol is in `docs/REALTIME.md` and `realtime.protocol`.

This module and `realtime.session` are the asyncio adapter around
`realtime.connection.Connection`, the connection's rules without I/O (frames in,
ticks, frames and closes out: the shape of the `websockets` library's own core).
Here: the handshake (the `auth` frame, the token check, `ready`); in the session:
reading the socket, the timers, opening topics (the hub), writing frames.

A session lasts as long as its credential: a timer ticks the connection at its
JWT's `exp` (closed 4401 `token_expired`), the hub's `RevocationWatcher` kills the
outbox when its personal access token is revoked (4401 `token_revoked`), and every
`subscribe` re-checks the credential first. A later `auth` frame with a token of
the same user replaces the credential (answered `authenticated`), extending the
session; another user's token is refused (`user_mismatch`) and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from projections.reachability import database_down
from realtime.connection import Authenticate, Connection, Request
from realtime.credentials import Credential
from realtime.errors import EdgeError
from realtime.fanout import FanoutBackend, InProcessFanout
from realtime.hub import Hub, HubSettings
from realtime.metrics import WS_CLOSED, WS_CONNECTIONS
from realtime.outbox import Outbox
from realtime.redis_fanout import RedisFanout
from realtime.relay import ChangeLogRelay
from realtime.session import DATABASE_DOWN_MESSAGE, Session, close

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import Receive, Scope, Send


# -- mounting --------------------------------------------------------------------------
def hub_routes(path: str = "/ws") -> list[BaseRoute]:
    return [WebSocketRoute(path, HubEndpoint(), name="hub")]


def hub_lifespan(
    settings: HubSettings | None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[Hub]]:
    """An `extra_lifespans` entry for `create_app`: runs the hub with the app. Without
    `settings`: the composition root's (`config.extra["hub"]`), else the defaults."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Hub]:
        config = app.state.config
        given = settings or config.extra.get("hub")
        chosen = (
            given if isinstance(given, HubSettings) else HubSettings(redis_url=config.redis_url)
        )
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
            loop = asyncio.get_running_loop()
            connection = Connection(hub.settings, Outbox(hub.settings.queue_bytes), loop.time())
            found = await handshake(websocket, hub, connection)
            if found is not None:
                credential, mark = found
                session = Session(websocket, hub, connection, credential, send, receive)
                await session.run(revocations_since=mark)
        finally:
            WS_CONNECTIONS.dec()
            if websocket.application_state != WebSocketState.DISCONNECTED:
                WS_CLOSED.labels("client").inc()  # it ended before we closed it


async def handshake(
    websocket: WebSocket, hub: Hub, connection: Connection
) -> tuple[Credential, int] | None:
    """The caller, from `?token=` or an `auth` frame within `auth_timeout_s`; else closed.
    With it, the revocation watcher's position before the token was checked."""
    token = websocket.query_params.get("token")
    if token is None:
        token = await _auth_frame(websocket, connection)
        if token is None:
            return None
    mark = hub.revocations.position
    try:
        credential = await hub.credential(token)
    except EdgeError as error:
        connection.refuse(error.code, error.message)
        connection.end("bad_token")
    except Exception as error:
        if not database_down(error):
            raise
        connection.refuse("database_unavailable", DATABASE_DOWN_MESSAGE)
        connection.end("database_unavailable")
    else:
        now = asyncio.get_running_loop().time()
        connection.authenticated(credential.principal.user_id, credential.expires_at, hub.head, now)
    await _send_replies(websocket, connection)
    if (code := connection.close_to_make()) is not None:
        await close(websocket, code)
        return None
    return credential, mark


async def _auth_frame(websocket: WebSocket, connection: Connection) -> str | None:
    loop = asyncio.get_running_loop()
    while True:
        remaining = connection.next_tick() - loop.time()
        try:
            message = await asyncio.wait_for(websocket.receive(), max(remaining, 0.001))
        except TimeoutError:
            connection.tick(loop.time(), time.time())
            requests: list[Request] = []
        else:
            if message["type"] == "websocket.disconnect":
                return None
            raw = message.get("text") or message.get("bytes") or b""
            requests = connection.receive(raw, loop.time())
        await _send_replies(websocket, connection)
        if (code := connection.close_to_make()) is not None:
            await close(websocket, code)
            return None
        for request in requests:
            if isinstance(request, Authenticate):
                return request.token


async def _send_replies(websocket: WebSocket, connection: Connection) -> None:
    """Before `ready` there is no outbox to wait on: replies go straight out."""
    for text in connection.frames_to_send():
        with contextlib.suppress(Exception):
            await websocket.send_text(text)

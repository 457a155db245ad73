"""The asyncio side of one authenticated `/ws` connection (see `realtime.ws`).

A `Session` runs three tasks: the reader (frames in, handed to the sans-I/O
`realtime.connection.Connection`, whose requests it carries out in order), the
writer (drains the connection's `Outbox`) and the heartbeat (ticks the
connection's clock). The first to finish, or the outbox's death, decides how the
socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from projections.reachability import database_down
from realtime.connection import CloseTopic, Connection, OpenTopic, Reauthenticate, Request
from realtime.credentials import Credential
from realtime.errors import EdgeError
from realtime.metrics import WS_CHANGES_SENT, WS_CLOSED
from realtime.outbox import Outbox
from realtime.protocol import CLOSE_CODES, CloseCode, Subscribe
from realtime.socketwriter import awaited, finish, socket_writer

if TYPE_CHECKING:
    from starlette.types import Receive, Send

    from realtime.auth import Principal
    from realtime.hub import Hub

log = logging.getLogger("darkroom.realtime.ws")
DATABASE_DOWN_MESSAGE = "the database is unreachable right now; retry in a moment"
CHANGE_PREFIX = '{"type":"change",'  # how `encode_change` starts every change frame


async def close(websocket: WebSocket, code: CloseCode) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        WS_CLOSED.labels(str(code.code)).inc()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code.code, code.reason), 5)


class Session:
    """The asyncio side of one authenticated `Connection`: its three tasks, its outbox,
    its credential (watched for revocation) and the timer at the credential's `exp`."""

    def __init__(
        self,
        websocket: WebSocket,
        hub: Hub,
        connection: Connection,
        credential: Credential,
        send: Send | None = None,
        receive: Receive | None = None,
    ) -> None:
        assert isinstance(connection.queue, Outbox)
        self.websocket = websocket
        self.send = send or websocket.send
        self.hub = hub
        self.connection = connection
        self.outbox: Outbox = connection.queue
        self.credential = credential
        self._expiry: asyncio.TimerHandle | None = None
        # A write `write_now` started that the socket could not finish at once (the
        # writer task finishes it), or the error it met (the writer task raises it).
        self._pending: tuple[Coroutine[Any, Any, None], Any] | None = None
        self._failed: BaseException | None = None
        self._socket = socket_writer(receive)

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
        # A timer on the loop's monotonic clock; the connection checks the wall clock
        # `exp` is on when it fires (and is re-armed if it fired early or the clock moved).
        delay = self.connection.expires_in(time.time())
        if delay is not None:
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        self.connection.tick(asyncio.get_running_loop().time(), time.time())
        self._arm()

    async def run(self, *, revocations_since: int | None = None) -> None:
        since = self.hub.revocations.position if revocations_since is None else revocations_since
        self._hold(self.credential, since)
        self.outbox.write_now = self._write_now
        if self._socket is not None:
            self.outbox.write_all = self._write_all
            self.outbox.socket = self._socket
        try:
            await self._run()
        finally:
            self.outbox.write_now = self.outbox.write_all = None
            self.outbox.socket = None
            self._release()
            if self._pending is not None:
                self._pending[0].close()

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
            for sub in self.connection.drop_all():
                self.hub.close(sub)
        reason = self._reason(done)
        self.outbox.kill(reason or "closed")
        if reason is not None:
            await close(self.websocket, CLOSE_CODES[reason])

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
    def _write_now(self, text: str, data: bytes | None) -> bool:
        """A live frame straight to the socket, from the caller's task (the hub's fan-out):
        True if it left without waiting. Under uvicorn's websockets-sansio protocol it is
        written as uvicorn's `send` would (`socket_writer`), else the ASGI `send` runs as a
        plain call; if it has to wait (the transport's buffer is past its high-water mark)
        the rest of it is left to the writer task and the frame stays queued until then."""
        if self._socket is not None:
            if not self._socket.write(text, data):
                return False  # the writer task sends it (and waits for the socket)
            if text.startswith(CHANGE_PREFIX):
                WS_CHANGES_SENT.inc()
            return True
        send = self.send({"type": "websocket.send", "text": text})
        if not isinstance(send, Coroutine):  # an ASGI server whose `send` is no coroutine
            self._pending = (awaited(send), None)
            return False
        try:
            waiting_on = send.send(None)
        except StopIteration:
            if text.startswith(CHANGE_PREFIX):
                WS_CHANGES_SENT.inc()
            return True
        except BaseException as error:  # the socket is gone: the writer task raises it
            self._failed = error
            return False
        self._pending = (send, waiting_on)
        return False

    def _write_all(self, frames: list[tuple[str, int, bytes | None]]) -> bool:
        """Changes that came together, in one write (`SocketWriter.write_all`)."""
        assert self._socket is not None
        if not self._socket.write_all(frames):
            return False
        WS_CHANGES_SENT.inc(len(frames))
        return True

    async def _write(self) -> None:
        outbox, send, frames = self.outbox, self.send, self.outbox.frames
        while not outbox.closed:
            if self._failed is not None:
                raise self._failed
            if frames:
                text = frames[0][0]
                if self._pending is not None:
                    await finish(*self._pending)
                    self._pending = None
                else:
                    await send({"type": "websocket.send", "text": text})
                outbox.sent()
                if text.startswith(CHANGE_PREFIX):
                    WS_CHANGES_SENT.inc()
            else:
                await outbox.wait()

    async def _heartbeat(self) -> None:
        """Ticks the connection's clock when it has something to do (a ping is due,
        idleness to check); the connection's close kills the outbox."""
        loop, connection = asyncio.get_running_loop(), self.connection
        while not self.outbox.closed:
            await asyncio.sleep(max(connection.next_tick() - loop.time(), 0.0))
            connection.tick(loop.time(), time.time())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or message.get("bytes") or b""
            for request in self.connection.receive(text, loop.time()):
                await self._carry_out(request)
            await self._flush()

    async def _flush(self) -> None:
        """The connection's replies, into the outbox (waiting for room, as a reader
        that cannot queue its reply stops reading)."""
        for frame in self.connection.frames_to_send():
            await self.outbox.put(frame)

    # -- the I/O the connection asks for ----------------------------------------------------
    async def _carry_out(self, request: Request) -> None:
        if isinstance(request, OpenTopic):
            await self._subscribe(request.frame)
        elif isinstance(request, CloseTopic):
            self.hub.close(request.handle)
        elif isinstance(request, Reauthenticate):
            await self._reauthenticate(request.token)

    async def _reauthenticate(self, token: str) -> None:
        """A fresh token of the session's user replaces the credential (extends it)."""
        mark = self.hub.revocations.position
        try:
            credential = await self.hub.credential(token)
        except EdgeError as error:
            # The session keeps its current credential (and ends with it).
            self.connection.refuse(error.code, error.message)
            return
        except Exception as error:
            if not database_down(error):
                raise
            self.connection.refuse("database_unavailable", DATABASE_DOWN_MESSAGE)
            return
        if self.connection.renewed(credential.principal.user_id, credential.expires_at):
            self._hold(credential, mark)

    async def _subscribe(self, frame: Subscribe) -> None:
        connection, topic, ref = self.connection, frame.topic, frame.ref
        try:
            ended = await self.hub.recheck(self.credential)
        except Exception as error:
            if not database_down(error):
                raise
            # PostgreSQL is down: this topic is refused, the socket and its topics stay.
            connection.refuse("database_unavailable", DATABASE_DOWN_MESSAGE, topic, ref)
            return
        if ended is not None:
            connection.end(ended)  # closed 4401: the credential no longer holds
            return
        old, admitted = connection.admit(frame)  # subscribing again starts over
        if old is not None:
            self.hub.close(old)
        if not admitted:
            return
        try:
            await self.hub.authorise(self.principal, topic)
            sub = await self.hub.open(
                topic,
                self.outbox,
                since=frame.since,
                ref=ref,
                at_least=await self.hub.session_position(self.principal),
            )
        except EdgeError as error:
            connection.refuse(error.code, error.message, topic, ref)
            return
        except ConnectionError:
            return
        except Exception as error:
            if database_down(error):
                connection.refuse("database_unavailable", DATABASE_DOWN_MESSAGE, topic, ref)
                return
            log.exception("subscribing to %s failed", topic)
            connection.refuse("unavailable", "the hub could not read this topic; retry", topic, ref)
            return
        connection.opened(topic, sub)

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
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.protocol import Side, State

from projections.reachability import database_down
from realtime.connection import CloseTopic, Connection, OpenTopic, Reauthenticate, Request
from realtime.credentials import Credential
from realtime.errors import EdgeError
from realtime.metrics import WS_CHANGES_SENT, WS_CLOSED
from realtime.outbox import Outbox
from realtime.protocol import CLOSE_CODES, CloseCode, Subscribe

if TYPE_CHECKING:
    from starlette.types import Receive, Send

    from realtime.auth import Principal
    from realtime.fanout import Change
    from realtime.hub import Hub

log = logging.getLogger("darkroom.realtime.ws")
DATABASE_DOWN_MESSAGE = "the database is unreachable right now; retry in a moment"
CHANGE_PREFIX = '{"type":"change",'  # how `encode_change` starts every change frame
CONTINUING = "expect_continuation_frame"  # the `websockets` core's fragmented-send flag


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
            self._pending = (_awaited(send), None)
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


async def finish(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Runs to its end a coroutine that was started by hand and left waiting on
    `waiting_on` (what it yielded: a future, or None for a bare yield)."""
    while True:
        try:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                # As a task does with what its coroutine yields: the future was marked
                # "awaited by a task" when it was yielded; this task awaits it now.
                waiting_on._asyncio_future_blocking = False
                await waiting_on
        except asyncio.CancelledError:
            coroutine.close()
            raise
        except BaseException:
            pass  # the coroutine reads the future's outcome itself when resumed
        try:
            waiting_on = coroutine.send(None)
        except StopIteration:
            return


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


class SocketWriter:
    """Direct writes to uvicorn's websockets-sansio protocol (the `receive` it hands the
    app is a method of it): what that protocol's ASGI `send` does for a text frame — the
    `websockets` core frames it, the transport writes it — done when `send` would not
    wait (writable, not closing, open). Otherwise False, and the frame goes the ASGI way
    (queued, sent by the writer task). `send_change`, the fan-out's path, writes the
    change's frame built once for every socket (`Change.framed`), so a delivery costs one
    `transport.write`, less than `websockets.broadcast` (which frames each socket's copy);
    frames that came together leave in one transport write."""

    __slots__ = ("conn", "most", "plain", "protocol", "transport", "writable")

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.conn, self.transport, self.writable = (
            protocol.conn,
            protocol.transport,
            protocol.writable,
        )
        # At most this much in one write of frames that came together (the transport's
        # high-water mark): past it the transport pauses, and a bigger batch goes frame by
        # frame, each checked, so what the socket cannot take waits in the bounded outbox.
        self.most = self.transport.get_write_buffer_limits()[1]
        # A server's frames with no extension negotiated (no per-message deflate) are the
        # same bytes on every socket: a change's frame is then built once (`Change.framed`)
        # and written as is, as the core's `send_text` would have built it here.
        conn = self.conn
        self.plain = (
            conn.side is Side.SERVER
            and not conn.extensions
            and isinstance(getattr(type(conn), "state", None), property)
            and all(hasattr(conn, name) for name in ("_state", "writes", CONTINUING))
        )

    def _open(self) -> bool:
        protocol = self.protocol
        return not (
            protocol.close_sent
            or protocol.disconnected
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
        )

    def write(self, text: str, data: bytes | None) -> bool:
        if not self._open():
            return False
        conn = self.conn
        conn.send_text(text.encode() if data is None else data)
        self.transport.write(b"".join(conn.data_to_send()))
        return True

    def send_change(self, change: Change) -> bool:
        """The fan-out's hot path (`realtime.outbox.deliver`): the change's frame, built
        once for every socket, written when the socket is open, writable and the core has
        nothing of its own waiting to go out (else False: the ordinary path)."""
        if not self.plain:
            return self.write(change.frame, change.data)
        protocol, conn = self.protocol, self.conn
        if (
            protocol.close_sent
            or protocol.disconnected
            or not self.writable.is_set()
            or conn._state is not State.OPEN
            or conn.writes
            or conn.expect_continuation_frame
        ):
            return False
        self.transport.write(change.framed)
        return True

    def send_changes(self, changes: list[Change]) -> bool:
        """Changes that came together, in one write (their frames built once each)."""
        if not self.plain:
            return self.write_all([(c.frame, c.size, c.data) for c in changes])
        conn = self.conn
        if (
            sum(c.size for c in changes) > self.most
            or not self._open()
            or conn.writes
            or conn.expect_continuation_frame
        ):
            return False
        self.transport.write(b"".join([c.framed for c in changes]))
        return True

    def write_all(self, frames: list[tuple[str, int, bytes | None]]) -> bool:
        if sum(size for _, size, _ in frames) > self.most or not self._open():
            return False
        conn = self.conn
        for text, _, data in frames:
            conn.send_text(text.encode() if data is None else data)
        self.transport.write(b"".join(conn.data_to_send()))
        return True


def socket_writer(receive: Receive | None) -> SocketWriter | None:
    """A `SocketWriter` when `receive` belongs to uvicorn's websockets-sansio protocol."""
    protocol: Any = getattr(receive, "__self__", None)
    if type(protocol).__name__ != "WebSocketsSansIOProtocol" or not all(
        hasattr(protocol, name)
        for name in ("conn", "transport", "writable", "close_sent", "disconnected")
    ):
        return None
    return SocketWriter(protocol)

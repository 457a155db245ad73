"""Writing to a `/ws` socket from outside its writer task (the hub's fan-out).

`SocketWriter` writes frames straight to uvicorn's websockets-sansio protocol when its
ASGI `send` would not wait; `finish` completes an ASGI `send` that was started by hand
and had to wait. Both serve `realtime.session.Session`'s direct path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from websockets.protocol import Side, State

if TYPE_CHECKING:
    from starlette.types import Receive

    from realtime.fanout import Change

CONTINUING = "expect_continuation_frame"  # the `websockets` core's fragmented-send flag


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


async def awaited(awaitable: Awaitable[None]) -> None:
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

"""A connection's outbox (the asyncio side of its `FrameQueue`) and its subscriptions.

Overflow policies: an `Outbox` is bounded in bytes; live changes past the limit
close the connection with 4001 (the client resumes with `since`). Snapshot and
replay frames wait for room instead (back-pressure on the subscriber that asked
for them). A `Subscription` delivers each change-log position above the last one
it delivered, once, so positions strictly increase per topic per connection
whatever path a change took (live batch, refill, replay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from realtime.connection import FrameQueue
from realtime.metrics import WS_CHANGES_SENT

if TYPE_CHECKING:
    from realtime.fanout import Change


class LiveSocket(Protocol):
    """A socket live changes can be written to from the fan-out itself
    (`realtime.socketwriter.SocketWriter`): True if the change(s) left without waiting."""

    def send_change(self, change: Change) -> bool: ...

    def send_changes(self, changes: list[Change]) -> bool: ...


class Outbox(FrameQueue):
    """`FrameQueue` with what the asyncio side waits on: `dead` (the close-code name,
    once killed), a frame to send (`wait`, `next`), room for a pulled frame (`put`).
    `socket`, set by the session while it runs when the server allows it, takes live
    changes straight from the fan-out (`deliver`)."""

    __slots__ = ("_loop", "_room", "_waiter", "dead", "socket")

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.socket: LiveSocket | None = None
        self._loop = asyncio.get_running_loop()
        self.dead: asyncio.Future[str] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None

    async def put(self, frame: str, size: int | None = None) -> None:
        """A pulled frame (reply, snapshot, replay): waits while the queue is full."""
        size = len(frame.encode()) if size is None else size
        while self.size >= self.limit and not self.closed:
            self._room = self._loop.create_future()
            await self._room
        if self.closed:
            raise ConnectionError("the connection is closing")
        self.append(frame, size)

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

    def push_changes(self, changes: list[Change]) -> None:
        """Live changes that came together: in one write when the socket takes them."""
        socket = self.socket
        if (
            socket is not None
            and not self.frames
            and not self.closed
            and sum(c.size for c in changes) <= self.limit  # the byte bound, as `deliver`
            and socket.send_changes(changes)
        ):
            WS_CHANGES_SENT.inc(len(changes))
            return
        self.push_all([(c.frame, c.size, c.data) for c in changes])

    def sent(self) -> None:
        FrameQueue.sent(self)
        room = self._room
        if room is not None and self.size < self.limit:
            self._room = None
            room.set_result(None)

    def kill(self, reason: str) -> None:
        """Stop accepting frames; the connection's owner closes with `reason`."""
        if self.closed:
            return
        FrameQueue.kill(self, reason)
        if not self.dead.done():
            self.dead.set_result(reason)
        for future in (self._room, self._waiter):
            if future is not None and not future.done():
                future.set_result(None)
        self._room = self._waiter = None

    def _queued(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set_result(None)


def deliver(subs: Iterable[Subscription], change: Change) -> None:
    """`change` to each of `subs` (one topic's subscriptions): the fan-out's hot path, one
    loop over the sockets. A live subscription whose outbox has nothing queued and whose
    socket takes the frame now gets it written at once (`LiveSocket.send_change`: the
    frame's bytes are built once per change); every other case (catching up, already
    delivered, frames queued, a socket that would wait, no socket) takes the queue's
    ordinary path (`Subscription.deliver`, `FrameQueue.push`), so order, the byte bound
    and exactly-once stay theirs."""
    position, size, sent = change.position, change.size, 0
    for sub in subs:
        if sub.buffer is not None or position <= sub.last:
            sub.deliver(change)  # held while catching up, or delivered already
            continue
        sub.last = position
        outbox = sub.outbox
        socket = outbox.socket
        if (
            socket is not None
            and not outbox.frames
            and not outbox.closed
            and size <= outbox.limit
            and socket.send_change(change)
        ):
            sent += 1
        else:
            outbox.push(change.frame, size, change.data)
    if sent:
        WS_CHANGES_SENT.inc(sent)  # once per change, not per socket


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
        if self.admits(change):
            self.outbox.push(change.frame, change.size, change.data)

    def admits(self, change: Change) -> bool:
        """True if `change` is this subscription's to send now (it is then counted as
        delivered); held while catching up, dropped at or below the last position."""
        buffer = self.buffer
        if buffer is not None:
            self._hold(buffer, change)
        elif change.position > self.last:
            self.last = change.position
            return True
        return False

    def _hold(self, buffer: list[Change], change: Change) -> None:
        if self.buffer_lost:
            return
        self.buffer_bytes += change.size
        if self.buffer_bytes > self.outbox.limit:
            buffer.clear()
            self.buffer_lost = True  # the catch-up reads these rows again
        else:
            buffer.append(change)

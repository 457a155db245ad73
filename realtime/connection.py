"""One `/ws` connection's rules, without I/O: the hub's sans-I/O core.

Shaped like the `websockets` library's own core (its `Protocol` does no I/O; its
asyncio `Connection` feeds it bytes and writes what it answers), a `Connection`
reads no socket and no clock. It is fed what happened:

- a client frame: `receive(text, now)`;
- the time: `tick(now, wall)` (`now` monotonic, `wall` unix seconds);
- a live frame for the socket (a change, a ping): `queue.push(frame, size)`;
- the answers of the I/O it asked for: `authenticated`, `admit` / `opened`,
  `renewed`, `refuse`, `end`.

It answers with frames to send (`frames_to_send()`: replies, which the adapter
queues and may wait for room for), the I/O to do (`receive` returns `Authenticate`,
`OpenTopic`, `Reauthenticate` or `CloseTopic` requests) and the close to make
(`close_to_make()`, a `CloseCode`). `realtime.ws` is the asyncio adapter: it reads
the socket, keeps the timers, checks tokens, opens topics and writes the frames.

The rules that live here:

- Before `ready`: the first frame must be `auth` (another frame: 4401), at most
  16 KiB (1009, checked before parsing), within `auth_timeout_s` (4408); a
  malformed frame is answered `bad_request` and the connection waits on.
- Malformed frames: answered `bad_request` (topic and ref echoed when readable);
  more than `max_bad_frames` in a row close 4500; a good frame resets the count.
- Topics: at most `max_subscriptions`; subscribing again to a topic starts over.
- The outgoing queue (`FrameQueue`) is bounded in bytes: a live frame past the
  bound condemns the connection (4001, resume with `since`); pulled frames
  (replies, snapshots, replays) wait for room instead (the adapter waits).
- Liveness: a `ping` every `ping_interval_s`; a client silent for `idle_timeout_s`
  is closed 4002, or 4001 when the queue is full (the adapter is then stuck queueing
  a reply and has not read what the client sent: it does not read, it is not silent).
- The credential's end: at `expires_at` (PyJWT's rule: expired once `exp <= now`)
  the connection closes 4401 `token_expired`; a fresh credential of the same user
  replaces it (answered `authenticated`), another user's is refused (`user_mismatch`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from realtime.protocol import (
    CLOSE_CODES,
    PING,
    PONG,
    Auth,
    Authenticated,
    BadFrameError,
    CloseCode,
    Error,
    Ping,
    Ready,
    Subscribe,
    Unsubscribe,
    Unsubscribed,
    parse_client_frame,
)

if TYPE_CHECKING:
    from realtime.hub import HubSettings

# Frames before `ready` (the `auth` frame): at most this many bytes, else closed 1009.
MAX_AUTH_FRAME = 16 * 1024
AUTHENTICATING, OPEN, CLOSED = "authenticating", "open", "closed"


# -- the outgoing queue ------------------------------------------------------------------
class FrameQueue:
    """A connection's outgoing frames, bounded in bytes; `(frame, size, live)` each.

    The writer sends `frames[0]`, then calls `sent()`: a frame is counted until it has
    left, so the bound covers the frame a stalled socket is stuck on. `push` is for live
    frames (never waits; past the bound the connection is condemned), `append` for
    pulled ones (the caller waited for room: `full` is False, or the queue is empty).

    `write_now`, when the adapter sets it, writes a live frame at once if nothing is
    queued before it and the socket takes it without waiting (True: it has left, it is
    never queued): one write per socket, no wake-up of the connection's writer task.
    Otherwise the frame is queued. `write_all` does the same for frames that came
    together, in one write. (The fan-out's own hot path, `realtime.outbox.deliver`,
    checks the same conditions before writing a change's prebuilt frame itself.)
    """

    __slots__ = ("closed", "frames", "limit", "pushed", "reason", "size", "write_all", "write_now")

    def __init__(self, limit: int) -> None:
        self.write_now: Callable[[str, bytes | None], bool] | None = None
        self.write_all: Callable[[list[tuple[str, int, bytes | None]]], bool] | None = None
        self.limit = limit
        self.frames: deque[tuple[str, int, bool]] = deque()
        self.size = 0  # bytes queued
        self.pushed = 0  # of which live frames
        self.closed = False
        self.reason: str | None = None  # the close-code name, once closed

    def push(self, frame: str, size: int, data: bytes | None = None) -> bool:
        """Queue a live frame (`data`: its UTF-8 bytes, when the caller has them); False
        when it was not taken (closed, or condemned now)."""
        if self.closed:
            return False
        if self.pushed + size > self.limit:
            self.kill("slow_consumer")
            return False
        write_now = self.write_now
        if write_now is not None and not self.frames and write_now(frame, data):
            return True
        self.frames.append((frame, size, True))
        self.size += size
        self.pushed += size
        self._queued()
        return True

    def push_all(self, frames: list[tuple[str, int, bytes | None]]) -> None:
        """Live frames that came together `(frame, size, data)`: with nothing queued before
        them, `write_all` writes them in one go if the socket takes them; else each is
        pushed."""
        write_all = self.write_all
        if write_all is not None and not self.frames and not self.closed and write_all(frames):
            return
        for frame, size, data in frames:
            self.push(frame, size, data)

    def _queued(self) -> None:
        """A frame waits in the queue (the asyncio side wakes its writer here)."""

    def append(self, frame: str, size: int) -> None:
        """Queue a pulled frame (a reply, a snapshot, a replayed change)."""
        self.frames.append((frame, size, False))
        self.size += size
        self._queued()

    @property
    def full(self) -> bool:
        """No room for a pulled frame: the caller of `append` waits first."""
        return self.size >= self.limit

    def sent(self) -> None:
        """The oldest frame has left."""
        if not self.frames:  # killed while the frame was on its way
            return
        _, size, live = self.frames.popleft()
        self.size -= size
        if live:
            self.pushed -= size

    def kill(self, reason: str) -> None:
        """Stop accepting frames; the connection closes with `reason` (a close-code name)."""
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        self.frames.clear()
        self.size = self.pushed = 0


# -- the I/O a connection asks for -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Authenticate:
    """Check `token`; answer `authenticated(...)` or `refuse(..., close=...)`."""

    token: str


@dataclass(frozen=True, slots=True)
class OpenTopic:
    """Re-check the credential, then `admit(frame)`, authorise and open, then `opened`."""

    frame: Subscribe


@dataclass(frozen=True, slots=True)
class Reauthenticate:
    """Check `token`; answer `renewed(user_id, expires_at)` or `refuse(code, message)`."""

    token: str


@dataclass(frozen=True, slots=True)
class CloseTopic:
    """Stop delivering to `handle` (what `opened` was given)."""

    handle: Any


Request = Authenticate | OpenTopic | Reauthenticate | CloseTopic


# -- the connection ----------------------------------------------------------------------
class Connection:
    """See the module docstring."""

    def __init__(self, settings: HubSettings, queue: FrameQueue, now: float) -> None:
        self.settings = settings
        self.queue = queue
        self.state = AUTHENTICATING
        self.auth_deadline = now + settings.auth_timeout_s
        self.user_id: str | None = None
        self.expires_at: float | None = None  # unix seconds
        self.subscriptions: dict[str, Any] = {}
        self.bad_frames = 0  # in a row
        self.last_heard = now
        self.interval = min(settings.ping_interval_s, settings.idle_timeout_s)
        self.next_ping = float("inf")
        self._replies: list[str] = []
        self._close: CloseCode | None = None

    # -- outputs ---------------------------------------------------------------------------
    def frames_to_send(self) -> list[str]:
        """The replies queued since the last call, in order."""
        replies, self._replies = self._replies, []
        return replies

    def close_to_make(self) -> CloseCode | None:
        """The close this connection decided on (None while it stays open)."""
        if self._close is None and self.queue.closed and self.queue.reason in CLOSE_CODES:
            # Condemned from outside: a live frame past the bound, a revoked token.
            self._close = CLOSE_CODES[self.queue.reason]
            self.state = CLOSED
        return self._close

    def next_tick(self) -> float:
        """When `tick` has something to do next (monotonic): the auth deadline, the next ping
        (which is also when idleness is checked)."""
        return self.auth_deadline if self.state == AUTHENTICATING else self.next_ping

    def expires_in(self, wall: float) -> float | None:
        """Seconds until the credential's end (None: it has none, or the connection ended)."""
        if self.expires_at is None or self.state != OPEN or self.queue.closed:
            return None
        return max(self.expires_at - wall, 0.0)

    # -- inputs ----------------------------------------------------------------------------
    def receive(self, text: str | bytes, now: float) -> list[Request]:
        """A frame from the client; returns the I/O it needs (replies: `frames_to_send`)."""
        if self.state == AUTHENTICATING:
            return self._receive_auth(text)
        if self.state != OPEN:
            return []
        self.last_heard = now
        try:
            frame = parse_client_frame(text)
        except BadFrameError as error:
            self.bad_frames += 1
            if self.bad_frames > self.settings.max_bad_frames:
                self.end("protocol_error")
            else:
                self.refuse("bad_request", str(error), error.topic, error.ref)
            return []
        self.bad_frames = 0
        if isinstance(frame, Subscribe):
            return [OpenTopic(frame)]
        if isinstance(frame, Unsubscribe):
            handle = self.subscriptions.pop(frame.topic, None)
            self._replies.append(Unsubscribed(topic=frame.topic, ref=frame.ref).encode())
            return [] if handle is None else [CloseTopic(handle)]
        if isinstance(frame, Ping):
            self._replies.append(PONG)
        elif isinstance(frame, Auth):
            return [Reauthenticate(frame.token)]
        return []  # a Pong: the answer to our ping (hearing it was the point)

    def _receive_auth(self, text: str | bytes) -> list[Request]:
        size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_AUTH_FRAME:
            # Checked before parsing: a token is at most 8 KiB; a big first frame is
            # never an auth frame (and JSON-parsing megabytes from anyone is a gift).
            self.end("auth_frame_too_big")
            return []
        try:
            frame = parse_client_frame(text)
        except BadFrameError as error:
            self.refuse("bad_request", str(error), error.topic, error.ref)
            return []
        if isinstance(frame, Auth):
            return [Authenticate(frame.token)]
        self.refuse("unauthenticated", "send an auth frame first")
        self.end("bad_token")
        return []

    def authenticated(
        self, user_id: str | None, expires_at: float | None, position: int, now: float
    ) -> None:
        """The token checked out: `ready`, and the session's clock starts."""
        self.state = OPEN
        self.user_id, self.expires_at = user_id, expires_at
        self.last_heard = now
        self.next_ping = now + self.interval
        self._replies.append(
            Ready(user_id=user_id, position=position, expires_at=_epoch(expires_at)).encode()
        )

    def renewed(self, user_id: str | None, expires_at: float | None) -> bool:
        """A later token checked out: True if it now carries the session (same user)."""
        if user_id != self.user_id:
            owner = "the bare service key" if self.user_id is None else f"user {self.user_id}"
            self.refuse(
                "user_mismatch",
                f"this connection belongs to {owner}; a "
                "token of another user is refused: open another connection",
            )
            return False
        self.expires_at = expires_at
        self._replies.append(Authenticated(user_id=user_id, expires_at=_epoch(expires_at)).encode())
        return True

    def admit(self, frame: Subscribe) -> tuple[Any, bool]:
        """Before opening `frame.topic`: (the handle it replaces, to close; may it open?).
        Subscribing again starts over; past `max_subscriptions` it is refused."""
        old = self.subscriptions.pop(frame.topic, None)
        cap = self.settings.max_subscriptions
        if len(self.subscriptions) >= cap:
            self.refuse(
                "too_many_subscriptions",
                f"at most {cap} topics per connection",
                frame.topic,
                frame.ref,
            )
            return old, False
        return old, True

    def opened(self, topic: str, handle: Any) -> None:
        self.subscriptions[topic] = handle

    def drop_all(self) -> list[Any]:
        """Every open topic's handle (the connection ends: close them all)."""
        handles = list(self.subscriptions.values())
        self.subscriptions.clear()
        return handles

    def refuse(self, code: str, message: str, topic: str | None = None, ref: Any = None) -> None:
        """Answer an `error` frame (the connection stays open)."""
        self._replies.append(Error(code=code, message=message, topic=topic, ref=ref).encode())

    def end(self, name: str) -> None:
        """Close with `CLOSE_CODES[name]` (the first close decided wins)."""
        if self._close is None:
            self._close = CLOSE_CODES[name]
            self.state = CLOSED
        self.queue.kill(name)

    def tick(self, now: float, wall: float) -> None:
        """The clocks moved: auth timeout, the credential's end, idle, ping."""
        if self.state == AUTHENTICATING:
            if now >= self.auth_deadline:
                self.end("auth_timeout")
            return
        if self.state != OPEN or self.queue.closed:
            return
        if self.expires_at is not None and self.expires_at <= wall:
            self.end("token_expired")
        elif now - self.last_heard > self.settings.idle_timeout_s:
            self.end("slow_consumer" if self.queue.full else "idle_timeout")
        elif now >= self.next_ping:
            self.next_ping = now + self.interval
            self.queue.push(PING, len(PING))


def _epoch(expires_at: float | None) -> int | None:
    return None if expires_at is None else int(expires_at)

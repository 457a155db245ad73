"""Server limits for `darkroom serve`: what one client may hold, and for how long.

uvicorn alone waits forever for a request's headers (300 slow-loris connections
were all held for 60 s) and accepts any number of connections. Its HTTP
protocol (h11) is subclassed here, so the limits act on connections before
any ASGI code runs:

- **header timeout**: a request's headers must be complete within
  `header_timeout_s` of the connection opening (or, on a kept-alive
  connection, of the first bytes of the next request); otherwise the
  connection is closed (with a 408 when part of a request came);
- **keep-alive**: an idle kept-alive connection is closed after `keep_alive_s`
  (uvicorn's `timeout_keep_alive`, here a float);
- **connection cap** and **per-IP limit**: a connection over
  `max_connections` in the process, or over `max_connections_per_ip` from its
  address, is answered `503` (`Retry-After: 1`, `Connection: close`) at once
  and closed; websockets count (an upgraded connection stays counted under its
  address). 0 turns a limit off.

Websocket frames are capped by uvicorn's `ws_max_size` (`ws_max_frame_bytes`,
the protocol's largest client frame): a bigger frame closes the socket with
1009 after its header is read, before its payload is buffered.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from darkroom.defaults import ServerLimits as ServerLimits  # its home; read as the limits'

LINGER_S = 1.0  # a refused connection reads (and drops) for this long, then closes


def _raw_response(status: int, reason: str, body: bytes, *extra: str) -> bytes:
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: text/plain; charset=utf-8",
        f"content-length: {len(body)}",
        "connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def guarded_h11(limits: ServerLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the limits above (pass it as `uvicorn.run(http=...)`)."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.timeout_keep_alive = limits.keep_alive_s  # type: ignore[assignment]
            self.header_timer: asyncio.TimerHandle | None = None
            self.refused = False
            self.heard = False  # bytes of the pending request arrived

        # -- accept or refuse --------------------------------------------------
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            why = self._over_limit()
            if why is not None:
                self._refuse(why)
                return
            self._arm_header_timer()

        def _over_limit(self) -> str | None:
            live = [c for c in self.connections if not getattr(c, "refused", False)]
            if limits.max_connections and len(live) > limits.max_connections:
                return "too many connections to this server; retry shortly\n"
            if limits.max_connections_per_ip and self.client is not None:
                host = self.client[0]
                mine = sum(1 for c in live if (getattr(c, "client", None) or ("",))[0] == host)
                if mine > limits.max_connections_per_ip:
                    return "too many connections from your address; retry shortly\n"
            return None

        def _refuse(self, why: str) -> None:
            """503 now, then a short lingering close: reading what the client sends
            meanwhile keeps its kernel from resetting the connection before it reads
            the answer."""
            self.refused = True
            self.transport.write(
                _raw_response(503, "Service Unavailable", why.encode(), "retry-after: 1")
            )
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

        # -- header timeout ----------------------------------------------------
        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            if limits.header_timeout_s > 0:
                self.heard = False
                self.header_timer = self.loop.call_later(
                    limits.header_timeout_s, self._header_timeout
                )

        def _cancel_header_timer(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _header_timeout(self) -> None:
            self.header_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self.heard:
                self.transport.write(
                    _raw_response(408, "Request Timeout", b"the request headers took too long\n")
                )
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self.refused:
                return
            if self.header_timer is None and self.conn.their_state is h11.IDLE:
                self._arm_header_timer()  # the first bytes of the next request
            if data:
                self.heard = True
            super().data_received(data)
            if self.header_timer is not None and self.conn.their_state is not h11.IDLE:
                self._cancel_header_timer()  # the headers are in

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    return GuardedH11Protocol

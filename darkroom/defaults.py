"""The server's limits and their defaults, apart from the h11 protocol that enforces them.

`darkroom.limits` guards connections with them; the settings tree (`darkroom.settings`)
takes each default from here without importing uvicorn.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime.protocol import MAX_CLIENT_FRAME


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 4096
    max_connections_per_ip: int = 256
    ws_max_frame_bytes: int = MAX_CLIENT_FRAME

"""The websocket hub's settings and their defaults, apart from the hub's code.

`realtime.hub` runs with them; the settings tree (`darkroom/settings_sections.py`)
takes each default from here without importing the hub and what it imports.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class HubSettings:
    """Knobs of the websocket hub; `darkroom.settings` builds them from `DARKROOM_WS_<FIELD>`."""

    queue_bytes: int = MIB
    auth_timeout_s: float = 5.0
    ping_interval_s: float = 25.0
    idle_timeout_s: float = 60.0
    max_subscriptions: int = 200
    max_bad_frames: int = 20
    replay_page: int = 500
    poll_s: float = 0.5
    heartbeat_s: float = 1.0
    stale_after_s: float = 3.0
    leader_retry_s: float = 0.5
    pool_size: int = 4
    revocation_poll_s: float = 0.25
    redis_url: str | None = None

"""What the edge needs to know, handed in by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from domain.studio import Studio

MIB = 1024 * 1024


@dataclass(frozen=True)
class EdgeConfig:
    """Settings of the HTTP/websocket edge; built by `darkroom.wiring`.

    `extra` is the composition root's hook for things the edge does not build
    itself (e.g. `extra["routes"]`: more routes such as `/ws`, mounted by
    `create_app`; `extra["lifespans"]`: async context managers entered after the
    edge's own resources, each called with the app).
    """

    conninfo: str
    schema: str
    build_studio: Callable[[], Studio]
    jwt_secret: str = "dev-only-secret-change-me-in-production"
    service_key: str = "dev-service-key"
    media_dir: Path = Path(".darkroom/media")
    redis_url: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
    max_body_bytes: int = 10 * MIB
    max_upload_bytes: int = 200 * MIB
    task_rate_limit: int = 120
    task_rate_window_s: float = 60.0
    read_timeout_s: float = 10.0
    view_pool_size: int = 4
    command_threads: int = 8
    worker_timeout_s: float = 120.0
    sweep_interval_s: float = 10.0  # 0: no sweeper in this process

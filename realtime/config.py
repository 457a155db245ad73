"""What the edge needs to know, handed in by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from domain.studio import Studio

MIB = 1024 * 1024
GIB = 1024 * MIB


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
    # False: no HTTP API in this process (`/api/...` answers 404; `/health` and extra
    # routes such as `/ws` stay): the hub role alone (darkroom/roles.py).
    serve_api: bool = True
    # A JWT must carry `exp`; `exp - iat` (or `exp - now`) at most this (0: no bound).
    jwt_max_lifetime_s: float = 24 * 3600.0
    # A user id (`sub`, `X-Darkroom-User`) is a UUID unless this allows any printable id.
    jwt_sub_any: bool = False
    # Bytes a user may upload per UTC day (0: no quota); the service key is not counted.
    upload_quota_bytes: int = 5 * GIB
    # Read-your-own-writes (realtime/sessions.py): a principal's reads wait for its last
    # acknowledged write. Off only to measure what it costs (bench/ryow.py).
    session_consistency: bool = True
    # `GET /health/ready` (realtime/health.py) answers 503 while a view is more than this
    # many events behind the log's head (negative: the views are not checked).
    ready_max_lag: int = 1000
    # An upload is decoded (realtime/api/sniffing.py); more pixels than this are refused.
    upload_max_pixels: int = 50_000_000
    # Media URLs (realtime/api/media.py): HMAC secret (empty: derived from jwt_secret),
    # lifetime of a URL, and the store's own URL maker for task outputs (S3 presigned).
    media_secret: str = ""
    media_url_ttl_s: int = 3600
    media_store_url: Callable[[str], str] | None = None

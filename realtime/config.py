"""What the edge needs to know, handed in by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from domain.studio import Studio


@dataclass(frozen=True)
class EdgeConfig:
    """Settings of the HTTP/websocket edge; built by `darkroom.wiring`."""

    conninfo: str
    schema: str
    build_studio: Callable[[], Studio]
    jwt_secret: str = "dev-secret-change-me"
    service_key: str = "dev-service-key"
    media_dir: Path = Path(".darkroom/media")
    redis_url: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

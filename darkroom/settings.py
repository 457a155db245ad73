"""The settings tree: every environment variable a Darkroom process reads, defined once.

`Settings()` reads the environment at start-up and is passed down; nothing below
`darkroom/` reads the environment. Each variable is one `knob(...)`: its name, its
default and a one-line description. Where a lower layer's container (`EdgeConfig`,
`HubSettings`, `ServerLimits`, `DispatcherConfig`) has the default, the knob takes it
from there, so a default is stated once; those containers live in small modules
(`realtime/config.py`, `realtime/defaults.py`, `darkroom/defaults.py`,
`inference/defaults.py`), so reading the settings imports neither the hub, the
dispatcher and Ray, nor uvicorn. The containers are built from the tree here and in
`darkroom.wiring` / `darkroom.dispatch`:

- `Settings`: the process (database, Redis, Ray, data dir, address, roles), the event
  store, the HTTP edge (auth, uploads, media URLs, sessions, readiness) and the
  server's connection limits (`server_limits`);
- `Settings.hub`: the websocket hub (`hub_settings`);
- `Settings.inference`: the dispatcher role and `darkroom worker` (`dispatcher_config`);
  both sections are declared in `darkroom/settings_sections.py`.

`python -m darkroom.settings --markdown` prints the table of every variable that
docs/OPERATIONS.md holds (a test compares the two).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings

from darkroom.defaults import ServerLimits
from darkroom.settings_sections import CONFIG, HubSection, InferenceSettings, knob
from inference.defaults import DispatcherConfig
from projections.changelog import RETENTION
from realtime.config import EdgeConfig
from realtime.defaults import HubSettings

# Aggregates kept per process (LRU). Bounded state keeps each one small: the bound
# is measured in docs/BENCHMARKS.md ("History").
DEFAULT_AGGREGATE_CACHE = 10_000
# Markers around the generated table in docs/OPERATIONS.md.
TABLE_BEGIN = "<!-- settings-table:begin (python -m darkroom.settings --markdown) -->"
TABLE_END = "<!-- settings-table:end -->"


class Settings(BaseSettings):
    """The root of the tree: one per process, built at start-up."""

    model_config = CONFIG

    # -- the process ------------------------------------------------------------------
    database_url: str | None = knob(
        None, "DATABASE_URL", "all", "PostgreSQL to use; unset: an embedded one in DATA_DIR/pg"
    )
    redis_url: str | None = knob(
        None,
        "REDIS_URL",
        "api, hub",
        "Redis for the hubs' fan-out and read-your-writes positions across nodes; unset: none",
    )
    ray_address: str | None = knob(
        None,
        "RAY_ADDRESS",
        "dispatcher",
        "Ray cluster to join (`DARKROOM_INFERENCE=ray`, `darkroom worker`); unset: a local Ray",
    )
    data_dir: Path = knob(
        Path(".darkroom"),
        "DATA_DIR",
        "all",
        "the embedded PostgreSQL (pg/), local media (media/) and tiny models (models/)",
    )
    port: int = knob(8085, "PORT", "serve", "port `darkroom serve` listens on")
    host: str = knob("127.0.0.1", "HOST", "serve", "interface `darkroom serve` listens on")
    roles: str = knob(
        "api,hub,projections,dispatcher",
        "DARKROOM_ROLES",
        "serve",
        "what `darkroom serve` runs: any of api, hub, projections, dispatcher (`--role`)",
    )
    log_format: str = knob(
        "text",
        "DARKROOM_LOG_FORMAT",
        "all",
        "`json`: one JSON object per log line and a `darkroom.access` line per request",
        pattern="^(text|json)$",
    )
    # -- the event store --------------------------------------------------------------
    db_schema: str = knob(
        "public", "DARKROOM_DB_SCHEMA", "all", "PostgreSQL schema of the events and views"
    )
    pool_size: int = knob(
        8, "DARKROOM_POOL_SIZE", "all", "PostgreSQL connections of the event store's pool"
    )
    snapshots: bool = knob(
        True, "DARKROOM_SNAPSHOTS", "all", "snapshot long-lived aggregates every 50 events"
    )
    aggregate_cache: int = knob(
        DEFAULT_AGGREGATE_CACHE,
        "DARKROOM_AGGREGATE_CACHE",
        "all",
        "aggregates cached per process (LRU, fast-forwarded on load); 0: none",
    )
    welcome_credits: float = knob(
        10.0, "DARKROOM_WELCOME_CREDITS", "api", "credits granted to a new user"
    )
    changelog_retention_days: float = knob(
        RETENTION.total_seconds() / 86400,
        "DARKROOM_CHANGELOG_RETENTION_DAYS",
        "projections",
        "days of change-log rows the projections keep for websocket resumes",
    )
    # -- the HTTP edge ----------------------------------------------------------------
    jwt_secret: str = knob(
        EdgeConfig.jwt_secret,
        "DARKROOM_JWT_SECRET",
        "api, hub",
        "HMAC secret of user JWTs (HS256); change it in production",
    )
    service_key: str = knob(
        EdgeConfig.service_key,
        "DARKROOM_SERVICE_KEY",
        "api, hub",
        "the service key (full access, may act for a user); change it in production",
    )
    jwt_max_lifetime_s: float = knob(
        EdgeConfig.jwt_max_lifetime_s,
        "DARKROOM_JWT_MAX_LIFETIME_S",
        "api, hub",
        "most a JWT may live (`exp - iat`), in seconds; 0: no bound",
    )
    jwt_sub_any: bool = knob(
        EdgeConfig.jwt_sub_any,
        "DARKROOM_JWT_SUB_ANY",
        "api, hub",
        "accept any printable user id (`sub`) instead of a UUID",
    )
    read_timeout_s: float = knob(
        EdgeConfig.read_timeout_s,
        "DARKROOM_READ_TIMEOUT_S",
        "api",
        "seconds a read waits for the views to reach its position (then 504)",
    )
    task_rate_limit: int = knob(
        EdgeConfig.task_rate_limit,
        "DARKROOM_TASK_RATE_LIMIT",
        "api",
        "tasks a user may create per minute (429 past it)",
    )
    worker_timeout_s: float = knob(
        EdgeConfig.worker_timeout_s,
        "DARKROOM_WORKER_TIMEOUT_S",
        "api",
        "seconds of silence after which a worker is lost and its tasks requeued",
    )
    sweep_interval_s: float = knob(
        EdgeConfig.sweep_interval_s,
        "DARKROOM_SWEEP_INTERVAL_S",
        "api",
        "seconds between lost-worker sweeps; 0: no sweeper in this process",
    )
    upload_quota_bytes: int = knob(
        EdgeConfig.upload_quota_bytes,
        "DARKROOM_UPLOAD_QUOTA_BYTES",
        "api",
        "bytes a user may upload per UTC day; 0: no quota",
    )
    upload_max_pixels: int = knob(
        EdgeConfig.upload_max_pixels,
        "DARKROOM_UPLOAD_MAX_PIXELS",
        "api",
        "pixels of an uploaded image or video frame past which it is refused (422)",
    )
    media_secret: str = knob(
        EdgeConfig.media_secret,
        "DARKROOM_MEDIA_SECRET",
        "api, hub",
        "HMAC secret of signed media URLs, the same on every node; empty: from the JWT secret",
    )
    media_url_ttl_s: int = knob(
        EdgeConfig.media_url_ttl_s,
        "DARKROOM_MEDIA_URL_TTL_S",
        "api, hub",
        "seconds a signed media URL lives (plus up to 300 s of rounding)",
        ge=1,
    )
    session_consistency: bool = knob(
        EdgeConfig.session_consistency,
        "DARKROOM_SESSION_CONSISTENCY",
        "api, hub",
        "reads wait for the caller's own last write; `n` only to measure its cost",
    )
    ready_max_lag: int = knob(
        EdgeConfig.ready_max_lag,
        "DARKROOM_READY_MAX_LAG",
        "all",
        "`/health/ready` is 503 while a view is more events behind; negative: not checked",
    )
    # -- the server's limits (darkroom/limits.py); 0 turns one off ---------------------
    header_timeout_s: float = knob(
        ServerLimits.header_timeout_s,
        "DARKROOM_HEADER_TIMEOUT_S",
        "serve",
        "seconds a request's headers may take (408 and close)",
    )
    keep_alive_s: float = knob(
        ServerLimits.keep_alive_s,
        "DARKROOM_KEEP_ALIVE_S",
        "serve",
        "seconds an idle kept-alive connection stays open",
    )
    max_connections: int = knob(
        ServerLimits.max_connections,
        "DARKROOM_MAX_CONNECTIONS",
        "serve",
        "connections of the process, websockets included (503 past it)",
    )
    max_connections_per_ip: int = knob(
        ServerLimits.max_connections_per_ip,
        "DARKROOM_MAX_CONNECTIONS_PER_IP",
        "serve",
        "connections from one address (503 past it); 0 behind a proxy",
    )
    ws_max_frame_bytes: int = knob(
        ServerLimits.ws_max_frame_bytes,
        "DARKROOM_WS_MAX_FRAME_BYTES",
        "serve",
        "largest websocket frame a client may send (close 1009)",
    )
    # -- the sections -------------------------------------------------------------------
    hub: HubSection = Field(default_factory=HubSection, exclude=True)
    inference: InferenceSettings = Field(default_factory=InferenceSettings, exclude=True)

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"


# -- what the lower layers receive ----------------------------------------------------------
def server_limits(settings: Settings) -> ServerLimits:
    return ServerLimits(
        header_timeout_s=settings.header_timeout_s,
        keep_alive_s=settings.keep_alive_s,
        max_connections=settings.max_connections,
        max_connections_per_ip=settings.max_connections_per_ip,
        ws_max_frame_bytes=settings.ws_max_frame_bytes,
    )


def hub_settings(settings: Settings) -> HubSettings:
    return HubSettings(**settings.hub.model_dump(), redis_url=settings.redis_url)


def dispatcher_config(settings: Settings) -> DispatcherConfig:
    run_types = (part.strip() for part in settings.inference.run_types.split(","))
    return DispatcherConfig(
        run_types=tuple(r for r in run_types if r), store_inline=settings.inference.store_inline
    )


# -- the table ------------------------------------------------------------------------
@dataclass(frozen=True)
class Variable:
    name: str
    default: Any
    role: str
    description: str


def variables(model: type[BaseModel] = Settings) -> Iterator[Variable]:
    """Every variable of the tree, the root's first, then each section's."""
    sections = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            sections.append(kind)
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        yield Variable(
            info.alias or name.upper(),
            info.get_default(call_default_factory=True),
            str(extra.get("role", "")),
            info.description or "",
        )
    for section in sections:
        yield from variables(section)


def shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "y" if value else "n"
    if value == "" or value == {}:
        return "empty"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def markdown() -> str:
    rows = ["| Variable | Default | Read by | What it sets |", "| --- | --- | --- | --- |"]
    for v in variables():
        rows.append(f"| `{v.name}` | {shown(v.default)} | {v.role} | {v.description} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    if argv != ["--markdown"]:
        print("usage: python -m darkroom.settings --markdown", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

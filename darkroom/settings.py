"""Settings from the environment: one object, built at start-up, passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of a Darkroom process; env names are the field names upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    database_url: str | None = None
    redis_url: str | None = None
    ray_address: str | None = None
    data_dir: Path = Path(".darkroom")
    port: int = 8085
    host: str = "127.0.0.1"
    # `darkroom serve` limits (darkroom/limits.py, docs/API.md "Server limits"); 0: off.
    header_timeout_s: float = Field(default=10.0, alias="DARKROOM_HEADER_TIMEOUT_S")
    keep_alive_s: float = Field(default=5.0, alias="DARKROOM_KEEP_ALIVE_S")
    max_connections: int = Field(default=4096, alias="DARKROOM_MAX_CONNECTIONS")
    max_connections_per_ip: int = Field(default=256, alias="DARKROOM_MAX_CONNECTIONS_PER_IP")
    ws_max_frame_bytes: int = Field(default=64 * 1024, alias="DARKROOM_WS_MAX_FRAME_BYTES")
    # What `darkroom serve` runs (darkroom/roles.py): api, hub, projections, dispatcher.
    roles: str = Field(default="api,hub,projections,dispatcher", alias="DARKROOM_ROLES")
    db_schema: str = Field(default="public", alias="DARKROOM_DB_SCHEMA")
    jwt_secret: str = Field(
        default="dev-only-secret-change-me-in-production", alias="DARKROOM_JWT_SECRET"
    )
    service_key: str = Field(default="dev-service-key", alias="DARKROOM_SERVICE_KEY")
    welcome_credits: float = Field(default=10.0, alias="DARKROOM_WELCOME_CREDITS")
    pool_size: int = Field(default=8, alias="DARKROOM_POOL_SIZE")
    read_timeout_s: float = Field(default=10.0, alias="DARKROOM_READ_TIMEOUT_S")
    task_rate_limit: int = Field(default=120, alias="DARKROOM_TASK_RATE_LIMIT")
    worker_timeout_s: float = Field(default=120.0, alias="DARKROOM_WORKER_TIMEOUT_S")
    sweep_interval_s: float = Field(default=10.0, alias="DARKROOM_SWEEP_INTERVAL_S")
    snapshots: bool = Field(default=True, alias="DARKROOM_SNAPSHOTS")
    aggregate_cache: int = Field(default=10_000, alias="DARKROOM_AGGREGATE_CACHE")
    changelog_retention_days: float = Field(default=7.0, alias="DARKROOM_CHANGELOG_RETENTION_DAYS")
    # The edge reads these three from the same variables when they are not passed to
    # `EdgeConfig` (realtime.config): most a JWT may live (exp - iat; 0: no bound),
    # any printable `sub` instead of a UUID, and a user's upload bytes per UTC day (0: none).
    jwt_max_lifetime_s: float = Field(default=24 * 3600.0, alias="DARKROOM_JWT_MAX_LIFETIME_S")
    jwt_sub_any: bool = Field(default=False, alias="DARKROOM_JWT_SUB_ANY")
    upload_quota_bytes: int = Field(default=5 * 1024**3, alias="DARKROOM_UPLOAD_QUOTA_BYTES")
    # Uploads are decoded (realtime/api/sniffing.py); an image or video frame with more
    # pixels than this is refused (422 media_too_many_pixels): a decompression-bomb guard.
    upload_max_pixels: int = Field(default=50_000_000, alias="DARKROOM_UPLOAD_MAX_PIXELS")
    # Media URLs are signed (realtime/api/media.py): /media/...?exp=<unix>&sig=<HMAC-SHA256
    # with this secret>; empty: derived from the JWT secret. Every server of one studio
    # needs the same secret. A URL lives media_url_ttl_s (+ up to 300 s of rounding).
    media_secret: str = Field(default="", alias="DARKROOM_MEDIA_SECRET")
    media_url_ttl_s: int = Field(default=3600, ge=1, alias="DARKROOM_MEDIA_URL_TTL_S")

    # Observability (docs/API.md "Observability"): `json` makes every log line a JSON
    # object and adds one `darkroom.access` line per request (darkroom/logs.py);
    # /health/ready is 503 while a view is more than ready_max_lag events behind (the edge
    # reads the same variable, realtime.config).
    log_format: str = Field(default="text", pattern="^(text|json)$", alias="DARKROOM_LOG_FORMAT")
    ready_max_lag: int = Field(default=1000, alias="DARKROOM_READY_MAX_LAG")

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"


class InferenceSettings(BaseSettings):
    """Inference knobs (the dispatcher role, `darkroom worker`, the media store), from the
    environment, read beside `Settings`."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    mode: str = Field(default="local", alias="DARKROOM_INFERENCE")  # off | local | ray
    models: dict[str, str] = Field(default_factory=dict, alias="DARKROOM_MODELS")  # JSON
    actors: str | None = Field(default=None, alias="DARKROOM_ACTORS")
    use_gpu: bool | None = Field(default=None, alias="DARKROOM_INFERENCE_GPU")
    num_cpus: int | None = Field(default=None, alias="DARKROOM_RAY_NUM_CPUS")
    object_store_mb: int = Field(default=256, alias="DARKROOM_RAY_OBJECT_STORE_MB")
    worker_id: str | None = Field(default=None, alias="DARKROOM_WORKER_ID")
    run_types: str = Field(default="gpu,api", alias="DARKROOM_RUN_TYPES")
    # Results go to an S3-compatible bucket when one is named (a worker on another machine
    # must), else to the local media folder that `serve` publishes under /media/.
    s3_bucket: str | None = Field(default=None, alias="DARKROOM_S3_BUCKET")
    s3_endpoint: str | None = Field(default=None, alias="DARKROOM_S3_ENDPOINT")
    s3_region: str | None = Field(default=None, alias="DARKROOM_S3_REGION")
    media_public_url: str | None = Field(default=None, alias="DARKROOM_MEDIA_PUBLIC_URL")

"""The settings tree's sections (darkroom/settings.py): the websocket hub and inference,
and `knob`, the one way a variable is declared.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.defaults import DispatcherConfig
from realtime.defaults import HubSettings


def knob(default: Any, env: str, role: str, description: str, **rules: Any) -> Any:
    """A setting: read from `env`, `default` when unset; `role` names who reads it."""
    return Field(
        default=default,
        alias=env,
        description=description,
        json_schema_extra={"role": role},
        **rules,
    )


CONFIG = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)


class HubSection(BaseSettings):
    """The websocket hub (`realtime.hub.HubSettings`)."""

    model_config = CONFIG

    queue_bytes: int = knob(
        HubSettings.queue_bytes,
        "DARKROOM_WS_QUEUE_BYTES",
        "hub",
        "bytes of live changes queued per connection before it is closed 4001 (slow consumer)",
    )
    auth_timeout_s: float = knob(
        HubSettings.auth_timeout_s,
        "DARKROOM_WS_AUTH_TIMEOUT_S",
        "hub",
        "seconds a new websocket has to send its `auth` frame",
    )
    ping_interval_s: float = knob(
        HubSettings.ping_interval_s,
        "DARKROOM_WS_PING_INTERVAL_S",
        "hub",
        "seconds between the hub's pings on a quiet connection",
    )
    idle_timeout_s: float = knob(
        HubSettings.idle_timeout_s,
        "DARKROOM_WS_IDLE_TIMEOUT_S",
        "hub",
        "seconds without a frame from the client before the connection is closed",
    )
    max_subscriptions: int = knob(
        HubSettings.max_subscriptions,
        "DARKROOM_WS_MAX_SUBSCRIPTIONS",
        "hub",
        "topics one connection may subscribe to",
    )
    max_bad_frames: int = knob(
        HubSettings.max_bad_frames,
        "DARKROOM_WS_MAX_BAD_FRAMES",
        "hub",
        "malformed frames a connection may send before it is closed",
    )
    replay_page: int = knob(
        HubSettings.replay_page,
        "DARKROOM_WS_REPLAY_PAGE",
        "hub",
        "change rows read per page when a subscriber resumes with `since`",
    )
    poll_s: float = knob(
        HubSettings.poll_s,
        "DARKROOM_WS_POLL_S",
        "hub",
        "seconds between the change-log relay's polls when no notification came",
    )
    heartbeat_s: float = knob(
        HubSettings.heartbeat_s,
        "DARKROOM_WS_HEARTBEAT_S",
        "hub",
        "seconds between the relay leader's heartbeats on the fan-out",
    )
    stale_after_s: float = knob(
        HubSettings.stale_after_s,
        "DARKROOM_WS_STALE_AFTER_S",
        "hub",
        "seconds without a batch from the fan-out after which the hub reads the change log itself",
    )
    leader_retry_s: float = knob(
        HubSettings.leader_retry_s,
        "DARKROOM_WS_LEADER_RETRY_S",
        "hub",
        "seconds between a standby relay's attempts to become the leader (with Redis)",
    )
    pool_size: int = knob(
        HubSettings.pool_size,
        "DARKROOM_WS_POOL_SIZE",
        "hub",
        "PostgreSQL connections of the hub's pool (snapshots, replays)",
    )
    revocation_poll_s: float = knob(
        HubSettings.revocation_poll_s,
        "DARKROOM_WS_REVOCATION_POLL_S",
        "hub",
        "seconds between reads of revoked access tokens (their sessions close 4401)",
    )


class InferenceSettings(BaseSettings):
    """The dispatcher role, `darkroom worker` and the media store of task outputs."""

    model_config = CONFIG

    mode: str = knob(
        "local",
        "DARKROOM_INFERENCE",
        "dispatcher",
        "`local` (a Ray started here), `ray` (join `RAY_ADDRESS`) or `off`",
    )
    models: dict[str, str] = knob(
        {},
        "DARKROOM_MODELS",
        "dispatcher",
        "JSON object model name → weights path or hub id; empty: the tiny models built here",
    )
    actors: str | None = knob(
        None,
        "DARKROOM_ACTORS",
        "dispatcher",
        "actor specs `model+model:count,...`; unset: one actor per model",
    )
    use_gpu: bool | None = knob(
        None,
        "DARKROOM_INFERENCE_GPU",
        "dispatcher",
        "actors ask Ray for a GPU; unset: when CUDA is available",
    )
    num_cpus: int | None = knob(
        None,
        "DARKROOM_RAY_NUM_CPUS",
        "dispatcher",
        "CPUs of a Ray started here; unset: Ray's own count",
    )
    object_store_mb: int = knob(
        256,
        "DARKROOM_RAY_OBJECT_STORE_MB",
        "dispatcher",
        "object store of a Ray started here, in MiB",
    )
    worker_id: str | None = knob(
        None,
        "DARKROOM_WORKER_ID",
        "dispatcher",
        "the dispatcher's worker id; unset: `ray:<host>:<pid>`",
    )
    run_types: str = knob(
        ",".join(DispatcherConfig.run_types),
        "DARKROOM_RUN_TYPES",
        "dispatcher",
        "run types whose tasks this dispatcher claims, comma-separated",
    )
    store_inline: bool = knob(
        DispatcherConfig.store_inline,
        "DARKROOM_DISPATCH_STORE_INLINE",
        "dispatcher",
        "write a local media store's files on the dispatcher's loop (no thread hand-off); "
        "turn off when the media folder is on a slow or network disk",
    )
    s3_bucket: str | None = knob(
        None,
        "DARKROOM_S3_BUCKET",
        "dispatcher, api",
        "S3 bucket for task outputs (a worker on another machine needs one); unset: local media",
    )
    s3_endpoint: str | None = knob(
        None, "DARKROOM_S3_ENDPOINT", "dispatcher, api", "S3-compatible endpoint URL"
    )
    s3_region: str | None = knob(None, "DARKROOM_S3_REGION", "dispatcher, api", "S3 region")
    media_public_url: str | None = knob(
        None,
        "DARKROOM_MEDIA_PUBLIC_URL",
        "dispatcher, api",
        "public base URL of the bucket's objects; unset: presigned URLs",
    )

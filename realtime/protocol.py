"""The `/ws` wire protocol: every frame as a pydantic model, close codes, change encoding.

Frames are JSON text. A client frame is parsed once with `parse_client_frame`
(a discriminated union on `type`); server frames are built from the models
below, except `change` frames, which are encoded once per change by
`encode_change` and shared by every connection that receives them (the hot
path of fan-out must not run pydantic per delivery).

Close codes live here (`CLOSE_CODES`), not in `realtime/errors.py`: the HTTP
error table maps statuses, this one maps websocket closes. 4000-4499 mean
"reconnect and resume with `since`", 4500+ mean "do not reconnect".

This module is sans-I/O: it imports neither asyncio nor Starlette.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_CLIENT_FRAME = 64 * 1024
TOPIC_PATTERN = re.compile(
    r"^(?P<kind>project|shot|generation|tasks|credits):(?P<key>[^\x00-\x20]{1,200})$"
)
TOPIC_KINDS = ("project", "shot", "generation", "tasks", "credits")
Position = Annotated[int, Field(ge=0, le=2**62)]
Ref = str | int | None
Topic = Annotated[str, Field(pattern=TOPIC_PATTERN.pattern, max_length=220)]


# -- close codes -----------------------------------------------------------------
@dataclass(frozen=True)
class CloseCode:
    code: int
    reason: str

    @property
    def resumable(self) -> bool:
        return 4000 <= self.code < 4500


CLOSE_CODES: dict[str, CloseCode] = {
    "slow_consumer": CloseCode(4001, "slow consumer; resume with since"),
    "idle_timeout": CloseCode(4002, "no frame from the client in time; resume with since"),
    "going_away": CloseCode(4004, "the hub failed this connection; reconnect and resume"),
    "bad_token": CloseCode(4401, "authentication failed"),
    # A session ends with its credential (the client reconnects with a fresh token).
    "token_expired": CloseCode(4401, "the token expired; send a fresh auth frame before exp"),
    "token_revoked": CloseCode(4401, "the access token was revoked"),
    "auth_timeout": CloseCode(4408, "no auth frame in time"),
    # The token could not be checked: PostgreSQL is down (reconnect in a moment).
    "database_unavailable": CloseCode(
        4013, "the database is unreachable; reconnect in a moment and resume with since"
    ),
    "protocol_error": CloseCode(4500, "too many malformed frames; fix the client first"),
    # The standard "message too big", for a first frame (before `ready`) over 16 KiB.
    "auth_frame_too_big": CloseCode(1009, "frames before authentication are at most 16 KiB"),
}

ERROR_CODES = (
    "bad_request",
    "forbidden",
    "unrecoverable_position",
    "unavailable",
    "too_many_subscriptions",
    "user_mismatch",
)


# -- client → server ---------------------------------------------------------------
class ClientFrame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Auth(ClientFrame):
    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=8192)


class Subscribe(ClientFrame):
    type: Literal["subscribe"]
    topic: Topic
    since: Position | None = None
    ref: Ref = None


class Unsubscribe(ClientFrame):
    type: Literal["unsubscribe"]
    topic: Topic
    ref: Ref = None


class Ping(ClientFrame):
    type: Literal["ping"]


class Pong(ClientFrame):
    type: Literal["pong"]


AnyClientFrame = Annotated[
    Auth | Subscribe | Unsubscribe | Ping | Pong, Field(discriminator="type")
]
CLIENT_FRAMES: TypeAdapter[Auth | Subscribe | Unsubscribe | Ping | Pong] = TypeAdapter(
    AnyClientFrame
)


class BadFrameError(ValueError):
    """A client frame that is not JSON, too large, or not one of the frames above."""

    def __init__(self, message: str, *, topic: str | None = None, ref: Ref = None) -> None:
        super().__init__(message)
        self.topic = topic
        self.ref = ref


def parse_client_frame(text: str | bytes) -> Auth | Subscribe | Unsubscribe | Ping | Pong:
    """One client frame, or `BadFrameError` saying what was wrong (echoing topic/ref)."""
    if len(text) > MAX_CLIENT_FRAME:
        raise BadFrameError(f"frames are at most {MAX_CLIENT_FRAME} bytes")
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadFrameError(f"not JSON: {error}") from None
    try:
        return CLIENT_FRAMES.validate_python(raw)
    except ValidationError as error:
        raise BadFrameError(_summary(error), **_echo(raw)) from None


def _summary(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'frame'}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)[:3]
    ]
    return "; ".join(parts)


def _echo(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    topic, ref = raw.get("topic"), raw.get("ref")
    return {
        "topic": topic if isinstance(topic, str) and len(topic) <= 220 else None,
        "ref": ref if isinstance(ref, str | int) and not isinstance(ref, bool) else None,
    }


def split_topic(topic: str) -> tuple[str, str]:
    """`"project:<id>"` → `("project", "<id>")`; the pattern was checked on parsing."""
    found = TOPIC_PATTERN.match(topic)
    if found is None:
        raise BadFrameError(f"unknown topic {topic!r}", topic=None)
    return found["kind"], found["key"]


# -- server → client ---------------------------------------------------------------
class ServerFrame(BaseModel):
    model_config = ConfigDict(frozen=True)

    def encode(self) -> str:
        return self.model_dump_json()


class Ready(ServerFrame):
    """`expires_at`: the credential's end (a JWT's `exp`, unix seconds), None if it has
    none (a personal access token lasts until revoked; the service key)."""

    type: Literal["ready"] = "ready"
    user_id: str | None
    position: int
    expires_at: int | None = None


class Authenticated(ServerFrame):
    """The answer to a later `auth` frame: the session now runs on that credential."""

    type: Literal["authenticated"] = "authenticated"
    user_id: str | None
    expires_at: int | None = None


class Subscribed(ServerFrame):
    """`position`: every change that follows has a greater one. With `snapshot` (no
    `since`), the snapshot is the topic's view as of exactly `position`; with
    `recovered`, `position` is the client's `since`."""

    type: Literal["subscribed"] = "subscribed"
    topic: str
    ref: Ref = None
    position: int
    recovered: bool
    snapshot: Any = None


class Unsubscribed(ServerFrame):
    type: Literal["unsubscribed"] = "unsubscribed"
    topic: str
    ref: Ref = None


class Change(ServerFrame):
    """Documents the shape `encode_change` writes by hand."""

    type: Literal["change"] = "change"
    topic: str
    position: int
    kind: str
    data: Any


class Error(ServerFrame):
    type: Literal["error"] = "error"
    code: str
    message: str = ""
    topic: str | None = None
    ref: Ref = None


class ServerPing(ServerFrame):
    type: Literal["ping"] = "ping"


class ServerPong(ServerFrame):
    type: Literal["pong"] = "pong"


AnyServerFrame = Annotated[
    Ready | Authenticated | Subscribed | Unsubscribed | Change | Error | ServerPing | ServerPong,
    Field(discriminator="type"),
]
SERVER_FRAMES: TypeAdapter[Any] = TypeAdapter(AnyServerFrame)

PING = ServerPing().encode()
PONG = ServerPong().encode()


def encode_change(topic: str, position: int, kind: str, data_json: str) -> str:
    """A `change` frame from the change log's raw JSON payload text (no re-parsing)."""
    return (
        f'{{"type":"change","topic":{json.dumps(topic)},"position":{int(position)},'
        f'"kind":{json.dumps(kind)},"data":{data_json}}}'
    )

"""A user's resource: a LoRA file in the media store or a URL it is fetched from (seed 002's
`resources` table and `lora_files` bucket)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from eventsourcing.domain import Aggregate, event

from domain.errors import ResourceNotFoundError, ValidationError

KINDS = ("lora",)
MAX_NAME = 200
MAX_URL = 4096


class Resource(Aggregate):
    """One LoRA of one user. Exactly one of `location` (a stored upload, `/media/...`) and
    `url` (http(s), fetched by the worker that runs a task naming it) is set."""

    TOPIC = "darkroom.resource"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.resource.created"
        owner_id: str
        kind: str
        name: str
        location: str | None
        url: str | None
        size: int | None
        sha256: str | None
        metadata: dict[str, Any]
        created_at: datetime

    class Deleted(Aggregate.Event):
        TOPIC = "darkroom.resource.deleted"
        deleted_at: datetime

    @event(Created)
    def __init__(
        self,
        owner_id: str,
        kind: str,
        name: str,
        location: str | None,
        url: str | None,
        size: int | None,
        sha256: str | None,
        metadata: dict[str, Any],
        created_at: datetime,
    ) -> None:
        self.owner_id = owner_id
        self.kind = kind
        self.name = name
        self.location = location
        self.url = url
        self.size = size
        self.sha256 = sha256
        self.metadata = metadata
        self.created_at = created_at
        self.deleted = False

    @classmethod
    def register(
        cls,
        owner_id: str,
        kind: str,
        name: str,
        *,
        location: str | None = None,
        url: str | None = None,
        size: int | None = None,
        sha256: str | None = None,
        metadata: dict[str, Any] | None = None,
        at: datetime,
    ) -> Resource:
        if not owner_id:
            raise ValidationError(f"a resource needs an owner (got {owner_id!r})")
        if kind not in KINDS:
            raise ValidationError(f"resource type must be one of {', '.join(KINDS)} (got {kind!r})")
        name = (name or "").strip()
        if not 1 <= len(name) <= MAX_NAME:
            raise ValidationError(f"a resource name is 1-{MAX_NAME} characters (got {name!r})")
        if (location is None) == (url is None):
            raise ValidationError(
                "a resource is either a stored file or a URL, not "
                f"{'both' if location else 'neither'}"
            )
        if url is not None:
            check_url(url)
        return cls(
            owner_id=owner_id,
            kind=kind,
            name=name,
            location=location,
            url=url,
            size=size,
            sha256=sha256,
            metadata=dict(metadata or {}),
            created_at=at,
        )

    @property
    def source(self) -> str:
        """Where a worker reads the file: the media location, else the URL."""
        return self.location or self.url or ""

    def require_visible_to(self, user_id: str | None) -> None:
        """Deleted, or another user's (a None user is the trusted service): not found."""
        if self.deleted or (user_id is not None and user_id != self.owner_id):
            raise ResourceNotFoundError(self.id)

    def delete(self, at: datetime) -> None:
        if self.deleted:
            raise ResourceNotFoundError(self.id)
        self._deleted(deleted_at=at)

    @event(Deleted)
    def _deleted(self, deleted_at: datetime) -> None:
        self.deleted = True


def _split(url: object) -> SplitResult | None:
    """The URL's parts, None when it does not parse ("http://[": an unclosed IPv6
    bracket, or a port that is no number)."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        return parts if parts.port is None or parts.port >= 0 else None
    except ValueError:
        return None


def check_url(url: str) -> str:
    parts = _split(url)
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or len(url) > MAX_URL
    ):
        raise ValidationError(
            f"a resource URL is an http(s) URL of at most {MAX_URL} characters (got {url!r})"
        )
    return url

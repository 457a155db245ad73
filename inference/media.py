"""Where results live: a media store gives each file a location like `/media/2026/<uuid>.png`.

A location is store-agnostic: the same string names the file in the local
folder (served by the API under `/media/`) and the object key in a bucket
(`media/2026/<uuid>.png`). Events and read models store locations, never URLs,
so switching stores or CDNs rewrites no history.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from inference.errors import InvalidMediaLocationError, MediaNotFoundError

PREFIX = "/media"
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
# Task outputs: /media/<year>/<uuid hex>.<ext>; uploads through the API: /media/uploads/<hex>[.ext].
_LOCATION = re.compile(
    r"/media/(?:\d{4}/[0-9a-f]{32}\.[A-Za-z0-9]{1,8}|uploads/[0-9a-f]{32}(?:\.[A-Za-z0-9]{1,10})?)"
)


class MediaStore(Protocol):
    """Stores bytes under fresh locations and reads them back."""

    def put(self, data: bytes, suffix: str, content_type: str) -> str:
        """Store `data`; return its new location (`/media/<yyyy>/<uuid><suffix>`)."""
        ...

    def get(self, location: str) -> bytes:
        """The bytes at `location`; `MediaNotFoundError` if none."""
        ...

    def url_for(self, location: str) -> str:
        """A URL a browser can fetch the file from."""
        ...

    def delete(self, location: str) -> None:
        """Remove the file at `location`; a location with no file is already gone."""
        ...


def new_location(suffix: str, now: datetime | None = None) -> str:
    """A fresh location; the year folder keeps directories (and bucket listings) small."""
    if not _SUFFIX.fullmatch(suffix):
        raise InvalidMediaLocationError(f"bad suffix {suffix!r}: want e.g. '.png'")
    year = (now or datetime.now(UTC)).year
    return f"{PREFIX}/{year:04d}/{uuid.uuid4().hex}{suffix.lower()}"


def check_location(location: str) -> str:
    """The location if it is one this package made; refuses anything else (e.g. `..`)."""
    if not isinstance(location, str) or not _LOCATION.fullmatch(location):
        raise InvalidMediaLocationError(f"not a media location: {location!r}")
    return location


class LocalMediaStore:
    """Files in a local folder: `<root>/<yyyy>/<uuid>.<ext>`. The default store."""

    # A put is a local file write (well under a millisecond for a picture): the
    # dispatcher writes a result's files on its loop, just before the completion it
    # sends from there, instead of handing them to a thread and back (`Recorder`).
    local = True

    def __init__(self, root: Path, url_base: str = "") -> None:
        self.root = Path(root)
        self.url_base = url_base.rstrip("/")

    def put(self, data: bytes, suffix: str, content_type: str) -> str:
        """Write atomically (temp file + rename): a reader never sees half a file."""
        location = new_location(suffix)
        path = self.path_for(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return location

    def get(self, location: str) -> bytes:
        try:
            return self.path_for(location).read_bytes()
        except FileNotFoundError:
            raise MediaNotFoundError(f"no media at {location}") from None

    def delete(self, location: str) -> None:
        self.path_for(location).unlink(missing_ok=True)

    def path_for(self, location: str) -> Path:
        """The file behind a location (it may not exist yet)."""
        relative = check_location(location).removeprefix(PREFIX + "/")
        return self.root / relative

    def url_for(self, location: str) -> str:
        return self.url_base + check_location(location)


class S3MediaStore:
    """Objects in an S3-compatible bucket (AWS, MinIO, R2), keyed `media/<yyyy>/<uuid>.<ext>`.

    Build it only when a bucket is configured: it imports boto3 and makes a
    client. `public_base_url` (a CDN or public bucket) gives plain URLs;
    without it `url_for` presigns a GET (SigV4) for `url_expiry` seconds: the API
    answers these for task outputs in the bucket (`DARKROOM_MEDIA_URL_TTL_S`).
    """

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        *,
        region_name: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        public_base_url: str | None = None,
        url_expiry: int = 3600,
        client: Any = None,
    ) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region_name,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                # Presigned URLs in SigV4 (X-Amz-Expires, X-Amz-Signature): what AWS wants
                # everywhere, and what MinIO and R2 accept.
                config=Config(signature_version="s3v4"),
            )
        self.client = client
        self.bucket = bucket
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.url_expiry = url_expiry

    @staticmethod
    def key_for(location: str) -> str:
        return check_location(location).lstrip("/")

    def put(self, data: bytes, suffix: str, content_type: str) -> str:
        location = new_location(suffix)
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.key_for(location),
            Body=data,
            ContentType=content_type,
            # Locations are never reused, so caches may keep the object forever.
            CacheControl="public, max-age=31536000, immutable",
        )
        return location

    def get(self, location: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key_for(location))
        except self.client.exceptions.NoSuchKey:
            raise MediaNotFoundError(f"no media at {location}") from None
        return response["Body"].read()

    def delete(self, location: str) -> None:
        key = self.key_for(location)
        # S3 answers a missing key with success; some compatible stores say NoSuchKey.
        with contextlib.suppress(self.client.exceptions.NoSuchKey):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def url_for(self, location: str) -> str:
        key = self.key_for(location)
        if self.public_base_url:
            return f"{self.public_base_url}/{key}"
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.url_expiry,
        )

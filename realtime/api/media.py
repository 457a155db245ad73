"""Files of the media store, served read-only under `/media/...` to signed URLs only.

Views and events keep bare locations (`/media/uploads/<hex>.png`); the edge turns
each one into a URL on the way out (`MediaUrls.signed_response` over every JSON answer,
`MediaUrls.sign_text` over the hub's frames) and back into a location on the way in
(`strip_all` over every JSON body), so a client may send back the URL it was given and
the studio stores the location.

A local URL is `/media/<path>?exp=<unix seconds>&sig=<base64url HMAC-SHA256 of
"<path>\\n<exp>">` with the server's media secret (`DARKROOM_MEDIA_SECRET`).
`exp` is rounded up to the next `step` seconds past now + ttl, so one file's URL
stays the same for `step` seconds (browsers cache it) and lives between ttl and
ttl + step seconds. `/media` answers 403 for a URL without a signature, with a
wrong one (compared in constant time) or past its `exp`; nothing is listed.

With an S3 store, `url_for` (the store's presigned GET) makes the URLs of
task outputs (`/media/<year>/...`); uploads through the API stay in the local
folder and keep the signed local URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from realtime.errors import MediaUrlExpiredError, MediaUrlInvalidError, MediaUrlUnsignedError

# What the store makes: task outputs /media/<year>/<uuid hex>.<ext>, uploads
# /media/uploads/<hex>[.ext] (inference.media's pattern; the edge may not import it).
LOCATION = re.compile(
    r"/media/(?:\d{4}/[0-9a-f]{32}\.[A-Za-z0-9]{1,8}"
    r"|uploads/[0-9a-f]{32}(?:\.[A-Za-z0-9]{1,10})?)"
)
QUOTED = re.compile(rf'"({LOCATION.pattern})"')
SIGNED = re.compile(rf"(?P<location>{LOCATION.pattern})\?exp=\d{{1,12}}&sig=[A-Za-z0-9_-]{{1,100}}")
STEP_S = 300
CACHE_SIZE = 100_000
MAX_DEPTH = 64


def media_secret(secret: str | None, jwt_secret: str) -> str:
    """The media secret, or one derived from the JWT secret when none is set (so a server
    whose JWT secret is private has a private media secret too)."""
    if secret:
        return secret
    return hmac.new(jwt_secret.encode(), b"darkroom media urls", hashlib.sha256).hexdigest()


class MediaUrls:
    """Signs locations into URLs and checks the URLs `/media` is asked for."""

    def __init__(
        self,
        secret: str,
        ttl_s: int = 3600,
        *,
        step_s: int = STEP_S,
        store_url: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("the media secret is empty")
        self.key = secret.encode()
        self.ttl_s = max(1, int(ttl_s))
        self.step_s = max(1, min(int(step_s), self.ttl_s))
        self.store_url = store_url
        self.clock = clock
        # Signed local URLs of the current `exp` (one rounding step), by quoted location: a
        # file answered again within the step costs a dict lookup, not an HMAC.
        self._quoted: dict[str, str] = {}
        self._quoted_exp = 0

    def signature(self, path: str, exp: int) -> str:
        mac = hmac.digest(self.key, f"{path}\n{exp}".encode(), "sha256")
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def expiry(self) -> int:
        return int(math.ceil((self.clock() + self.ttl_s) / self.step_s) * self.step_s)

    def _in_store(self, location: str) -> bool:
        """Whether the store makes this file's URL (S3 task outputs), not `/media`."""
        return self.store_url is not None and not location.startswith("/media/uploads/")

    def sign(self, location: str, exp: int | None = None) -> str:
        """The URL a client fetches `location` from (the store's own for S3 outputs)."""
        if self._in_store(location):
            return self.store_url(location)  # type: ignore[misc]
        exp = self.expiry() if exp is None else exp
        return f"{location}?exp={exp}&sig={self.signature(location, exp)}"

    def check(self, path: str, query_string: str) -> None:
        """Passes for a valid, unexpired signature of `path`; else a 403 naming why."""
        query = parse_qs(query_string, keep_blank_values=True)
        exp, sig = query.get("exp", [""])[-1], query.get("sig", [""])[-1]
        if not exp and not sig:
            raise MediaUrlUnsignedError(
                f"{path} has no signature: media URLs come from the API (?exp=...&sig=...)"
            )
        if not exp.isdigit() or len(exp) > 12:
            raise MediaUrlInvalidError(f"exp={exp!r} of {path} is not a unix time")
        if not hmac.compare_digest(sig.encode(), self.signature(path, int(exp)).encode()):
            raise MediaUrlInvalidError(f"sig={sig[:100]!r} does not sign {path} until {exp}")
        if int(exp) < self.clock():
            raise MediaUrlExpiredError(
                f"the URL of {path} expired at {exp} (unix time); ask the API for a fresh one",
                expired_at=int(exp),
            )

    # ---- answers and frames -----------------------------------------------------------
    def sign_text(self, text: str) -> str:
        """JSON text with every string that is exactly a media location replaced by its URL
        (one `exp` for the whole text). Works on the encoded text: a location needs no JSON
        escaping, so `"<location>"` there is a whole string, unless its quote is escaped
        (a string that merely holds one), which is left alone."""
        if '"/media/' not in text:
            return text
        exp = self.expiry()
        if exp != self._quoted_exp or len(self._quoted) > CACHE_SIZE:
            self._quoted, self._quoted_exp = {}, exp
        cache = self._quoted

        def replace(found: re.Match[str]) -> str:
            whole = found.group(0)
            if found.start() and text[found.start() - 1] == "\\":
                return whole
            url = cache.get(whole)
            if url is None:
                location = found.group(1)
                if self._in_store(location):
                    return f'"{self.sign(location)}"'
                url = cache[whole] = f'"{self.sign(location, exp)}"'
            return url

        return QUOTED.sub(replace, text)

    def signed_response(self, response: Response) -> Response:
        """A JSON response with its media locations signed (`Content-Length` too)."""
        body = bytes(response.body)
        if b'"/media/' not in body:
            return response
        response.body = self.sign_text(body.decode()).encode()
        response.headers["content-length"] = str(len(response.body))
        return response


def strip_all(data: Any) -> Any:
    """`data` with every signed local media URL replaced by its bare location (whether
    the signature is good or not: the location alone is what the studio stores)."""
    return _walk(data, _strip_string, MAX_DEPTH)


def _strip_string(value: str) -> str:
    found = SIGNED.fullmatch(value) if "?exp=" in value else None
    return found["location"] if found else value


def _walk(data: Any, fn: Callable[[str], str], depth: int) -> Any:
    if isinstance(data, str):
        return fn(data) if data.startswith("/media/") else data
    if depth <= 0:
        return data
    if isinstance(data, dict):
        return {key: _walk(value, fn, depth - 1) for key, value in data.items()}
    if isinstance(data, list):
        return [_walk(value, fn, depth - 1) for value in data]
    return data


# ---- the /media mount -----------------------------------------------------------------
def guarded(app: ASGIApp) -> ASGIApp:
    """`app` (the media folder) behind the signature check of `app.state.media_urls`."""

    async def check(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            urls: MediaUrls = scope["app"].state.media_urls
            urls.check(scope["path"], scope.get("query_string", b"").decode("latin-1"))
        await app(scope, receive, send)

    return check


def mount(media_dir: Path) -> Mount:
    media_dir.mkdir(parents=True, exist_ok=True)
    return Mount("/media", app=StaticFiles(directory=media_dir, check_dir=False), name="media")

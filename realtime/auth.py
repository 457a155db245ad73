"""Who is calling: a JWT (HS256, user id in `sub`), a personal access token, or the service key.

The service key is a trusted caller (workers, back office): commands run with
`user_id=None`. It may act for a user by naming them in `X-Darkroom-User`.
New users are registered (with their welcome credits) on their first
authenticated request; users already seen are remembered in memory. The
registration's position is the user's session position (realtime/sessions.py):
their first read sees the welcome credits.

A JWT must carry `exp`, and may live at most `max_lifetime_s` (`exp - iat`, or
`exp - now` without `iat`; 0: no bound). A user id (`sub`, `X-Darkroom-User`) is
a UUID, answered in its canonical form, unless `any_subject` allows any printable
id (`DARKROOM_JWT_SUB_ANY`).

Verified JWTs are cached (`TokenCache`): keyed by the token's SHA-256, at most
`JWT_CACHE_SIZE` entries (least recently used dropped first), an entry never used
past the token's `exp` (an expired token goes through the full check again and is
refused). JWTs cannot be revoked, so caching them changes no answer. Personal access
tokens are not cached: they are looked up in the event store on every request, so a
revoked one is refused on the next request on every node (the hub's RevocationWatcher
polls, so it could not make a cache exact).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt
from starlette.concurrency import run_in_threadpool

from domain.metadata import CommandMeta
from realtime.errors import (
    ForbiddenError,
    InvalidSubjectError,
    TokenExpiredError,
    TokenLifetimeTooLongError,
    TokenWithoutExpiryError,
    UnauthenticatedError,
)
from realtime.ids import new_correlation

if TYPE_CHECKING:
    from starlette.requests import Request

    from domain.studio import Studio
    from realtime.sessions import SessionPositions

ACT_AS_HEADER = "x-darkroom-user"
MAX_USER_ID = 200
DAY_S = 24 * 3600
JWT_CACHE_SIZE = 10_000


class TokenCache:
    """Claims of verified JWTs by the token's digest: bounded (LRU), never past `exp`."""

    def __init__(self, size: int | None = None) -> None:
        self.size = JWT_CACHE_SIZE if size is None else size  # 0: cache nothing
        self._entries: OrderedDict[tuple[bytes, object], dict[str, object]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(token: str, settings: object) -> tuple[bytes, object]:
        return hashlib.sha256(token.encode()).digest(), settings

    def get(self, key: tuple[bytes, object]) -> dict[str, object] | None:
        """The cached claims, or None (unknown, or its `exp` reached: then forgotten)."""
        with self._lock:
            claims = self._entries.get(key)
            if claims is None:
                return None
            exp = claims["exp"]
            assert isinstance(exp, int | float)
            if exp <= time.time():  # PyJWT refuses a token at its exp: so does the cache
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return dict(claims)

    def put(self, key: tuple[bytes, object], claims: dict[str, object]) -> None:
        with self._lock:
            self._entries[key] = dict(claims)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `user_id` is None for the service key acting for nobody."""

    via: str  # "jwt" | "pat" | "service"
    user_id: str | None

    @property
    def is_service(self) -> bool:
        return self.via == "service"

    def require_user(self) -> str:
        """The user this request acts for; the bare service key has none."""
        if self.user_id is None:
            raise ForbiddenError(
                f"this route acts for a user: send a user's token, or the service key with "
                f"an {ACT_AS_HEADER!r} header",
                code="user_required",
            )
        return self.user_id

    @property
    def scope(self) -> str | None:
        """The `user_id` handed to domain verbs: None (trusted) for the service key."""
        return None if self.is_service else self.user_id

    @property
    def actor(self) -> str:
        """Who the command's events name as their actor (a worker route names its worker)."""
        return f"user:{self.user_id}" if self.user_id is not None else "system:service"

    def meta(
        self,
        request: Request,
        *,
        worker_id: str | None = None,
        route: str | None = None,
        request_hash: str | None = None,
        credential: str | None = None,
    ) -> CommandMeta:
        # The request's id (realtime.observe) is the one its answer and log line carry.
        correlation = (
            getattr(request.state, "correlation_id", None)
            or request.headers.get("x-correlation-id")
            or str(uuid.uuid4())
        )
        key = request.headers.get("idempotency-key") or None
        actor = f"worker:{worker_id}" if worker_id else self.actor
        request.state.actor = actor
        return CommandMeta(
            actor=actor,
            correlation_id=correlation[:200],
            idempotency_key=key[:200] if key else None,
            route=route,
            request_hash=request_hash,
            credential=credential,
            command_id=new_correlation(),  # a version 4 UUID, without reading os.urandom
        )


class Authenticator:
    """Turns an `Authorization: Bearer …` header into a `Principal`."""

    def __init__(
        self,
        studio: Studio,
        jwt_secret: str,
        service_key: str,
        *,
        max_lifetime_s: float = DAY_S,
        any_subject: bool = False,
        sessions: SessionPositions | None = None,
    ) -> None:
        self._studio = studio
        self._secret = jwt_secret
        self._service_key = service_key
        self.max_lifetime_s = max_lifetime_s
        self.any_subject = any_subject
        self.sessions = sessions
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self.jwt_cache = TokenCache()

    async def authenticate(self, request: Request) -> Principal:
        token = bearer_token(request.headers.get("authorization"))
        if hmac.compare_digest(token.encode(), self._service_key.encode()):
            acting = self._acting_user(request)
            if acting is not None:
                await self.ensure_known(acting)
            return Principal("service", acting)
        if token.count(".") == 2:
            principal = Principal("jwt", self._jwt_subject(token))
        else:
            user_id = await run_in_threadpool(self._studio.user_for_token, token)
            if user_id is None:
                raise UnauthenticatedError("unknown or revoked access token", code="invalid_token")
            principal = Principal("pat", user_id)
        await self.ensure_known(principal.require_user())
        return principal

    def _jwt_subject(self, token: str) -> str:
        return str(self.jwt_claims(token)["sub"])

    def jwt_claims(self, token: str) -> dict[str, object]:
        """The claims of a valid token: signed with our secret, `exp` present and not past,
        a lifetime within `max_lifetime_s`, `sub` a valid user id (put back canonical).
        Served from `jwt_cache` while the token's `exp` is ahead."""
        key = TokenCache.key(token, (self.max_lifetime_s, self.any_subject))
        cached = self.jwt_cache.get(key)
        if cached is not None:
            return cached
        claims = self._verify(token)
        self.jwt_cache.put(key, claims)
        return claims

    def _verify(self, token: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpiredError("the token has expired (its exp is past)") from None
        except jwt.MissingRequiredClaimError as error:
            if error.claim == "exp":
                raise TokenWithoutExpiryError(
                    "the token has no exp claim: tokens must expire, at most "
                    f"{self.max_lifetime_s:g} s after they are issued"
                ) from None
            raise InvalidSubjectError(
                f"the token has no {error.claim} claim (the user id)"
            ) from None
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"invalid token: {error}", code="invalid_token") from None
        self._check_lifetime(claims)
        claims["sub"] = check_user_id(claims.get("sub"), any_id=self.any_subject, what="sub")
        return claims

    def _check_lifetime(self, claims: dict[str, object]) -> None:
        if not self.max_lifetime_s:
            return
        exp, iat = claims["exp"], claims.get("iat")
        assert isinstance(exp, int | float)  # PyJWT checked it is an integer
        lifetime, how = exp - time.time(), "exp - now"
        if isinstance(iat, int | float) and exp - iat > lifetime:
            lifetime, how = exp - iat, "exp - iat"
        if lifetime > self.max_lifetime_s:
            raise TokenLifetimeTooLongError(
                f"the token lives {lifetime:.0f} s ({how}); the most a token may live is "
                f"{self.max_lifetime_s:g} s (DARKROOM_JWT_MAX_LIFETIME_S)",
                lifetime_s=round(lifetime),
                max_lifetime_s=self.max_lifetime_s,
            )

    def _acting_user(self, request: Request) -> str | None:
        acting = request.headers.get(ACT_AS_HEADER)
        if not acting:
            return None
        return check_user_id(acting, any_id=self.any_subject, what=ACT_AS_HEADER)

    async def ensure_known(self, user_id: str) -> None:
        """Registers a user (and grants the welcome credits) the first time they are seen."""
        if user_id in self._known:
            return
        result = await run_in_threadpool(
            self._studio.ensure_user, user_id, CommandMeta.for_user(user_id)
        )
        if result.created and self.sessions is not None:
            # The welcome grant is the user's first write: their first read sees it.
            await self.sessions.remember(user_id, result.position)
        with self._lock:
            self._known.add(user_id)


def bearer_token(header: str | None) -> str:
    if not header:
        raise UnauthenticatedError(
            "send 'Authorization: Bearer <token>'", code="missing_credentials"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError(
            "the Authorization header must be 'Bearer <token>'", code="invalid_credentials"
        )
    return token.strip()


def check_user_id(value: object, *, any_id: bool = True, what: str = "user id") -> str:
    """A user id as the edge takes it: a UUID (answered canonical, lower-case, hyphenated),
    or with `any_id` any non-empty printable string of at most `MAX_USER_ID` characters."""
    shown = repr(value)[:80]
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_USER_ID
        or not value.isprintable()
    ):
        raise InvalidSubjectError(
            f"{what} {shown}: a user id is a non-empty printable string of at most "
            f"{MAX_USER_ID} characters"
        )
    if any_id:
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidSubjectError(
            f"{what} {shown} is not a UUID: user ids are UUIDs "
            "(DARKROOM_JWT_SUB_ANY=y allows any printable id)"
        ) from None


def issue_jwt(secret: str, user_id: str, *, ttl_s: int | None = 3600) -> str:
    """A user's HS256 token (tests, benchmarks and local tools). `ttl_s=None` leaves out
    `exp`: such a token is refused (`token_without_expiry`); tests use it to show that."""
    claims: dict[str, object] = {"sub": user_id, "iat": int(time.time())}
    if ttl_s is not None:
        claims["exp"] = int(time.time()) + ttl_s
    return jwt.encode(claims, secret, algorithm="HS256")

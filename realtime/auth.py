"""Who is calling: a JWT (HS256, user id in `sub`), a personal access token, or the service key.

The service key is a trusted caller (workers, back office): commands run with
`user_id=None`. It may act for a user by naming them in `X-Darkroom-User`.
New users are registered (with their welcome credits) on their first
authenticated request; users already seen are remembered in memory.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt
from starlette.concurrency import run_in_threadpool

from domain.metadata import CommandMeta
from realtime.errors import ForbiddenError, UnauthenticatedError

if TYPE_CHECKING:
    from starlette.requests import Request

    from domain.studio import Studio

ACT_AS_HEADER = "x-darkroom-user"
MAX_USER_ID = 200


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
                f"an {ACT_AS_HEADER!r} header", code="user_required")
        return self.user_id

    @property
    def scope(self) -> str | None:
        """The `user_id` handed to domain verbs: None (trusted) for the service key."""
        return None if self.is_service else self.user_id

    def meta(self, request: Request, *, worker_id: str | None = None) -> CommandMeta:
        correlation = request.headers.get("x-correlation-id") or str(uuid.uuid4())
        key = request.headers.get("idempotency-key") or None
        if worker_id:
            actor = f"worker:{worker_id}"
        elif self.user_id is not None:
            actor = f"user:{self.user_id}"
        else:
            actor = "system:service"
        return CommandMeta(actor=actor, correlation_id=correlation[:200],
                           idempotency_key=key[:200] if key else None)


class Authenticator:
    """Turns an `Authorization: Bearer …` header into a `Principal`."""

    def __init__(self, studio: Studio, jwt_secret: str, service_key: str) -> None:
        self._studio = studio
        self._secret = jwt_secret
        self._service_key = service_key
        self._known: set[str] = set()
        self._lock = threading.Lock()

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
                raise UnauthenticatedError("unknown or revoked access token",
                                           code="invalid_token")
            principal = Principal("pat", user_id)
        await self.ensure_known(principal.require_user())
        return principal

    def _jwt_subject(self, token: str) -> str:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"],
                                options={"require": ["sub"]})
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("the token has expired", code="token_expired") from None
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"invalid token: {error}", code="invalid_token") from None
        return check_user_id(claims.get("sub"))

    def _acting_user(self, request: Request) -> str | None:
        acting = request.headers.get(ACT_AS_HEADER)
        return check_user_id(acting) if acting else None

    async def ensure_known(self, user_id: str) -> None:
        """Registers a user (and grants the welcome credits) the first time they are seen."""
        if user_id in self._known:
            return
        await run_in_threadpool(self._studio.ensure_user, user_id,
                                CommandMeta.for_user(user_id))
        with self._lock:
            self._known.add(user_id)


def bearer_token(header: str | None) -> str:
    if not header:
        raise UnauthenticatedError("send 'Authorization: Bearer <token>'",
                                   code="missing_credentials")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError("the Authorization header must be 'Bearer <token>'",
                                   code="invalid_credentials")
    return token.strip()


def check_user_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_USER_ID \
            or not value.isprintable():
        raise UnauthenticatedError(
            f"a user id is a non-empty printable string of at most {MAX_USER_ID} characters",
            code="invalid_subject")
    return value


def issue_jwt(secret: str, user_id: str, *, ttl_s: int | None = 3600) -> str:
    """A user's HS256 token (tests, benchmarks and local tools)."""
    import time

    claims: dict[str, object] = {"sub": user_id, "iat": int(time.time())}
    if ttl_s is not None:
        claims["exp"] = int(time.time()) + ttl_s
    return jwt.encode(claims, secret, algorithm="HS256")

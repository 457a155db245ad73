from __future__ import annotations

import hashlib
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import TokenNotFoundError, ValidationError

USER_NAMESPACE = uuid5(NAMESPACE_URL, "https://darkroom.local/users")
TOKEN_NAMESPACE = uuid5(NAMESPACE_URL, "https://darkroom.local/tokens")


def hash_token(token: str) -> str:
    """Tokens are stored only as this digest; the plain token is shown once."""
    return hashlib.sha256(token.encode()).hexdigest()


class User(Aggregate):
    """A studio user, keyed by the auth subject (JWT `sub`)."""

    TOPIC = "darkroom.user"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.user.created"
        user_id: str
        created_at: datetime

    class TokenIssued(Aggregate.Event):
        TOPIC = "darkroom.user.token_issued"
        token_id: UUID
        label: str
        created_at: datetime

    class TokenRevoked(Aggregate.Event):
        TOPIC = "darkroom.user.token_revoked"
        token_id: UUID

    @staticmethod
    def create_id(user_id: str, created_at: datetime) -> UUID:
        return User.id_for(user_id)

    @staticmethod
    def id_for(user_id: str) -> UUID:
        return uuid5(USER_NAMESPACE, user_id)

    @event(Created)
    def __init__(self, user_id: str, created_at: datetime) -> None:
        self.user_id = user_id
        self.created_at = created_at
        self.tokens: dict[UUID, dict[str, object]] = {}

    @classmethod
    def register(cls, user_id: str, at: datetime) -> User:
        if not user_id or not user_id.strip():
            raise ValidationError(f"a user id must be non-empty (got {user_id!r})")
        return cls(user_id=user_id, created_at=at)

    def issue_token(self, token_id: UUID, label: str, at: datetime) -> None:
        label = (label or "").strip()
        if not label or len(label) > 100:
            raise ValidationError(f"a token label is 1-100 characters (got {label!r})")
        self._token_issued(token_id=token_id, label=label, created_at=at)

    def revoke_token(self, token_id: UUID) -> None:
        if token_id not in self.tokens:
            raise TokenNotFoundError(token_id)
        self._token_revoked(token_id=token_id)

    @event(TokenIssued)
    def _token_issued(self, token_id: UUID, label: str, created_at: datetime) -> None:
        self.tokens[token_id] = {"id": token_id, "label": label, "created_at": created_at}

    @event(TokenRevoked)
    def _token_revoked(self, token_id: UUID) -> None:
        del self.tokens[token_id]


class AccessToken(Aggregate):
    """A personal access token, found by the digest of its value (never the value)."""

    TOPIC = "darkroom.access_token"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.access_token.created"
        digest: str
        user_id: str
        label: str

    class Revoked(Aggregate.Event):
        TOPIC = "darkroom.access_token.revoked"

    @staticmethod
    def create_id(digest: str, user_id: str, label: str) -> UUID:
        return AccessToken.id_for_digest(digest)

    @staticmethod
    def id_for_digest(digest: str) -> UUID:
        return uuid5(TOKEN_NAMESPACE, digest)

    @event(Created)
    def __init__(self, digest: str, user_id: str, label: str) -> None:
        self.digest = digest
        self.user_id = user_id
        self.label = label
        self.revoked = False

    def revoke(self) -> None:
        if not self.revoked:
            self._revoked()

    @event(Revoked)
    def _revoked(self) -> None:
        self.revoked = True

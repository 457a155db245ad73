"""Users, personal access tokens and credit grants."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.credits import CreditLedger
from domain.errors import TokenNotFoundError, UserNotFoundError, ValidationError
from domain.metadata import CommandMeta
from domain.services.base import Decision, ServiceBase, as_uuid, now
from domain.services.written import (
    CreditsGranted,
    CreditsToppedUp,
    TokenIssued,
    TokenRevoked,
    UserWritten,
)
from domain.user import AccessToken, User, hash_token

TOKEN_PREFIX = "drk_"
Amount = Decimal | float | int | str  # what a ledger takes: a number, or one as text


class AccountServices(ServiceBase):
    """Users appear on first sight with their welcome credits; tokens are stored hashed."""

    welcome_credits: Decimal = Decimal("10")

    def ensure_user(self, user_id: str, meta: CommandMeta | None = None) -> UserWritten:
        """Register a user once (with the welcome grant); later calls store nothing."""
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValidationError(f"a user id must be non-empty (got {user_id!r})")
        if self._exists(User.id_for(user_id)):
            return UserWritten(user_id=user_id, created=False, position=self.head_position())

        def decide() -> Decision[UserWritten]:
            if self._exists(User.id_for(user_id)):
                return [], UserWritten(user_id=user_id, created=False)
            user = User.register(user_id, now())
            ledger = CreditLedger.open(user_id)
            if self.welcome_credits > 0:
                ledger.grant(self.welcome_credits, "welcome", now(), reference="welcome")
            return [user, ledger], UserWritten(user_id=user_id, created=True)

        return self._command(meta, decide)

    def user(self, user_id: str) -> User:
        try:
            return self.repository.get(User.id_for(user_id))
        except AggregateNotFoundError:
            raise UserNotFoundError(user_id) from None

    def ledger(self, user_id: str) -> CreditLedger:
        try:
            return self.repository.get(CreditLedger.id_for(user_id))
        except AggregateNotFoundError:
            raise UserNotFoundError(user_id) from None

    def grant_credits(
        self, user_id: str, amount: Amount, reason: str, meta: CommandMeta | None = None
    ) -> CreditsGranted:
        self.ensure_user(user_id)

        def decide() -> Decision[CreditsGranted]:
            ledger = self.ledger(user_id)
            ledger.grant(amount, reason, now())
            return [ledger], CreditsGranted(user_id=user_id, balance=ledger.balance)

        return self._command(meta, decide)

    def top_up_credits(
        self, user_id: str, amount: Amount, reference: str, meta: CommandMeta | None = None
    ) -> CreditsToppedUp:
        """Bought credits (`CreditLedger.top_up`). `reference` is the payment's external id:
        a reference the ledger has already seen adds nothing, stores nothing and answers
        `added: False`, so a replayed payment webhook is harmless."""
        if not isinstance(reference, str) or not reference.strip():
            raise ValidationError(f"a top-up needs a payment reference (got {reference!r})")
        self.ensure_user(user_id)

        def decide() -> Decision[CreditsToppedUp]:
            ledger = self.ledger(user_id)
            added = ledger.top_up(amount, now(), reference=reference)
            return ([ledger] if added else []), CreditsToppedUp(
                user_id=user_id, reference=reference, added=added, balance=ledger.balance
            )

        return self._command(meta, decide)

    def issue_token(self, user_id: str, label: str, meta: CommandMeta | None = None) -> TokenIssued:
        """A new personal access token; the plain value is in this result only."""
        self.ensure_user(user_id)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)

        def decide() -> Decision[TokenIssued]:
            user = self.user(user_id)
            access = AccessToken(digest=hash_token(token), user_id=user_id, label=label)
            user.issue_token(access.id, label, now())
            return [user, access], TokenIssued(token_id=access.id, label=label)

        result = self._command(meta, decide)
        # The plain token is never stored, not even in the idempotency record.
        return result if result.replayed else replace(result, token=token)

    def revoke_token(
        self, user_id: str, token_id: UUID, meta: CommandMeta | None = None
    ) -> TokenRevoked:
        ident = as_uuid(token_id, "token id")

        def decide() -> Decision[TokenRevoked]:
            user = self.user(user_id)
            if ident not in user.tokens:
                raise TokenNotFoundError(ident)
            access: AccessToken = self.repository.get(ident)
            user.revoke_token(ident)
            access.revoke()
            return [user, access], TokenRevoked(token_id=ident)

        return self._command(meta, decide)

    def user_for_token(self, token: str) -> str | None:
        """The user a personal access token belongs to, or None (unknown or revoked)."""
        try:
            access: AccessToken = self.repository.get(AccessToken.id_for_digest(hash_token(token)))
        except AggregateNotFoundError:
            return None
        return None if access.revoked else access.user_id

    def tokens(self, user_id: str) -> list[dict[str, str]]:
        try:
            user = self.user(user_id)
        except UserNotFoundError:
            return []
        return [
            {"id": str(t["id"]), "label": str(t["label"]), "created_at": _iso(t["created_at"])}
            for t in user.tokens.values()
        ]


def _iso(at: object) -> str:
    return at.isoformat() if isinstance(at, datetime) else str(at)

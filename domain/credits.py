"""The credit ledger of one user: grants, top-ups, task spends and refunds.

Its state is what its rules need, not its history: the balance, the entry count,
the payment references seen (one per top-up: rare, and a replayed webhook must add
nothing however old), and the charges of the last `RECENT_CHARGES` (100) tasks (refunds and
the once-per-task guard). Every entry stays in the event log and in the `credits`
view; the aggregate does not keep them, so a ledger costs the same to load and copy
after years of tasks (docs/EVENTSTORE.md, "Bounded command cost").
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.catalogue import as_decimal
from domain.errors import InsufficientCreditsError, ValidationError
from domain.task import COMPLETE, require_utc

if TYPE_CHECKING:
    from domain.task import Task

GRANT = "grant"
TOP_UP = "top_up"
SPEND = "spend"
REFUND = "refund"
ENTRY_KINDS = (GRANT, TOP_UP, SPEND, REFUND)

LEDGER_NAMESPACE = uuid5(NAMESPACE_URL, "https://darkroom.studio/credit-ledger")
THOUSANDTH = Decimal("0.001")
# Charges remembered per ledger. A task is charged once, in the same save as its one
# transition to Complete (the task is the primary guard); this window backs it up and
# lets a recent task be refunded. Older charges are in the log and the view. ≈ 300 B
# each in memory: a full window is ≈ 30 KB, so a cache of 10,000 full ledgers ≈ 300 MB.
RECENT_CHARGES = 100


def round_credits(amount: Decimal) -> Decimal:
    """Credits are kept to 3 decimals (fractions of a cent), halves away from zero."""
    return amount.quantize(THOUSANDTH, rounding=ROUND_HALF_UP)


class CreditLedger(Aggregate):
    TOPIC = "darkroom.credit_ledger"
    # 2: state is balance, count, references and the last RECENT_CHARGES charges (was
    # every entry). Bump it whenever an @event body, or a constant one reads, changes:
    # older snapshots are then ignored instead of loaded as current.
    class_version = 2

    class Created(Aggregate.Created):
        TOPIC = "darkroom.credit_ledger.created"
        user_id: str

    class EntryRecorded(Aggregate.Event):
        TOPIC = "darkroom.credit_ledger.entry_recorded"
        kind: str
        amount: Decimal
        reason: str
        task_id: UUID | None
        reference: str | None
        at: datetime

    @staticmethod
    def create_id(user_id: str) -> UUID:
        return uuid5(LEDGER_NAMESPACE, user_id)

    @classmethod
    def id_for(cls, user_id: str) -> UUID:
        return cls.create_id(user_id)

    @event(Created)
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.total = Decimal(0)
        self.entry_count = 0
        self.references: set[str] = set()
        # task id -> what it still costs (spend net of refunds), oldest first
        self.charges: dict[UUID, Decimal] = {}

    @classmethod
    def open(cls, user_id: str) -> CreditLedger:
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValidationError(f"a credit ledger needs a user id (got {user_id!r})")
        return cls(user_id=user_id)

    # -- queries -------------------------------------------------------------
    @property
    def balance(self) -> Decimal:
        return round_credits(self.total)

    @property
    def has_credit(self) -> bool:
        """Claiming needs a balance above zero."""
        return self.balance > 0

    def require_credit(self) -> None:
        if not self.has_credit:
            raise InsufficientCreditsError(
                f"user {self.user_id} has a balance of {self.balance} credits; more than 0 "
                "is needed"
            )

    def spent_on(self, task_id: UUID) -> Decimal:
        """What a recently charged task costs, net of refunds (0 if unknown)."""
        return self.charges.get(task_id, Decimal(0))

    def has_charged(self, task_id: UUID) -> bool:
        return task_id in self.charges

    def has_reference(self, reference: str) -> bool:
        return reference in self.references

    # -- decisions -----------------------------------------------------------
    def grant(
        self,
        amount: Decimal | float | int | str,
        reason: str,
        at: datetime,
        *,
        reference: str | None = None,
    ) -> bool:
        """Free credits (welcome grant, support gesture). A repeated reference adds nothing."""
        return self._credit(GRANT, amount, reason, at, reference)

    def top_up(
        self,
        amount: Decimal | float | int | str,
        at: datetime,
        *,
        reason: str = "top-up",
        reference: str | None = None,
    ) -> bool:
        """Bought credits; `reference` (the payment id) makes a replayed webhook harmless."""
        return self._credit(TOP_UP, amount, reason, at, reference)

    def charge_task(
        self,
        task_id: UUID,
        amount: Decimal | float | int | str,
        at: datetime,
        *,
        reason: str = "task",
    ) -> bool:
        """The spend of a completed task, once per task: True when recorded now."""
        cost = round_credits(self._non_negative(amount))
        if self.has_charged(task_id) or cost == 0:
            return False
        self._entry_recorded(
            kind=SPEND,
            amount=-cost,
            reason=reason,
            task_id=task_id,
            reference=None,
            at=require_utc(at),
        )
        return True

    def charge_for(self, task: Task, amount: Decimal | float | int | str, at: datetime) -> bool:
        """Charges a task of this user only if it completed: failed and cancelled cost nothing."""
        if task.owner_id != self.user_id:
            raise ValidationError(
                f"task {task.id} belongs to {task.owner_id!r}, not to {self.user_id!r}"
            )
        if task.status != COMPLETE:
            return False
        return self.charge_task(task.id, amount, at, reason=f"task {task.task_type}")

    def refund_task(self, task_id: UUID, at: datetime, *, reason: str = "refund") -> bool:
        """Gives back what a task still costs (nothing if it cost nothing)."""
        owed = self.spent_on(task_id)
        if owed <= 0:
            return False
        self._entry_recorded(
            kind=REFUND,
            amount=owed,
            reason=reason,
            task_id=task_id,
            reference=None,
            at=require_utc(at),
        )
        return True

    def _credit(
        self,
        kind: str,
        amount: Decimal | float | int | str,
        reason: str,
        at: datetime,
        reference: str | None,
    ) -> bool:
        value = round_credits(self._non_negative(amount))
        if value == 0:
            raise ValidationError(f"a {kind} must be more than 0 credits (got {amount!r})")
        if reference is not None and self.has_reference(reference):
            return False
        self._entry_recorded(
            kind=kind,
            amount=value,
            reason=reason or kind,
            task_id=None,
            reference=reference,
            at=require_utc(at),
        )
        return True

    @staticmethod
    def _non_negative(amount: Decimal | float | int | str) -> Decimal:
        value = as_decimal(amount, "a credit amount")
        if value < 0:
            raise ValidationError(f"a credit amount must be ≥ 0 (got {amount!r})")
        return value

    # -- state ---------------------------------------------------------------
    @event(EntryRecorded)
    def _entry_recorded(
        self,
        kind: str,
        amount: Decimal,
        reason: str,
        task_id: UUID | None,
        reference: str | None,
        at: datetime,
    ) -> None:
        self.total += amount
        self.entry_count += 1
        if reference is not None:
            self.references.add(reference)
        if task_id is not None and kind in (SPEND, REFUND):
            self.charges[task_id] = self.charges.pop(task_id, Decimal(0)) - amount
            while len(self.charges) > RECENT_CHARGES:
                del self.charges[next(iter(self.charges))]

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4, uuid5

import pytest
from eventsourcing.application import Application

from domain.catalogue import resolve_default
from domain.credits import (
    GRANT,
    LEDGER_NAMESPACE,
    RECENT_CHARGES,
    REFUND,
    SPEND,
    TOP_UP,
    CreditLedger,
)
from domain.errors import InsufficientCreditsError, ValidationError
from domain.task import Task

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def kinds(ledger: CreditLedger) -> list[str]:
    return [
        e.kind
        for e in ledger.collect_events()  # type: ignore[attr-defined]
        if isinstance(e, CreditLedger.EntryRecorded)
    ]


def funded(amount: str = "5") -> CreditLedger:
    ledger = CreditLedger.open("user-1")
    ledger.grant(amount, "welcome", T0)
    return ledger


def a_task(owner: str = "user-1") -> Task:
    return Task.create(
        project_id=uuid4(),
        owner_id=owner,
        task_type=resolve_default("image_upscale"),
        params={},
        at=T0,
    )


def test_the_ledger_id_is_derived_from_the_user_id() -> None:
    ledger = CreditLedger.open("user-1")
    assert ledger.id == CreditLedger.id_for("user-1") == uuid5(LEDGER_NAMESPACE, "user-1")
    assert CreditLedger.id_for("user-2") != ledger.id


def test_a_new_ledger_has_no_credit() -> None:
    ledger = CreditLedger.open("user-1")
    assert (ledger.balance, ledger.has_credit) == (Decimal("0.000"), False)
    assert [type(e) for e in ledger.collect_events()] == [CreditLedger.Created]


def test_a_ledger_needs_a_user_id() -> None:
    with pytest.raises(ValidationError, match="user id"):
        CreditLedger.open(" ")


def test_the_balance_is_the_sum_of_entries_rounded_to_three_decimals() -> None:
    ledger = funded("1")
    ledger.top_up("2.5", T0)
    ledger.charge_task(uuid4(), "0.0278", T0)
    ledger.charge_task(uuid4(), "0.0015", T0)
    assert kinds(ledger) == [GRANT, TOP_UP, SPEND, SPEND]
    assert ledger.balance == Decimal("3.470")


def test_charging_a_task_twice_records_one_spend() -> None:
    ledger = funded()
    task_id = uuid4()
    assert ledger.charge_task(task_id, "0.2", T0) is True
    assert ledger.charge_task(task_id, "0.2", T0) is False
    assert ledger.balance == Decimal("4.800")
    assert [type(e) for e in ledger.collect_events()] == [
        CreditLedger.Created,
        CreditLedger.EntryRecorded,
        CreditLedger.EntryRecorded,
    ]


def test_a_spend_is_recorded_as_a_negative_entry_for_its_task() -> None:
    ledger = funded()
    task_id = uuid4()
    ledger.charge_task(task_id, Decimal("0.039"), T0)
    entry = ledger.collect_events()[-1]
    assert (entry.kind, entry.amount, entry.task_id, entry.at) == (  # type: ignore[attr-defined]
        SPEND,
        Decimal("-0.039"),
        task_id,
        T0,
    )
    assert ledger.has_charged(task_id) and ledger.spent_on(task_id) == Decimal("0.039")


def test_a_completed_task_is_charged() -> None:
    ledger, task = funded(), a_task()
    task.claim("worker-1", T0)
    task.complete("m.png", T0)
    assert ledger.charge_for(task, "0.0015", T0) is True
    assert ledger.spent_on(task.id) == Decimal("0.002")


@pytest.mark.parametrize("end", ["fail", "cancel"])
def test_a_failed_or_cancelled_task_costs_nothing(end: str) -> None:
    ledger, task = funded(), a_task()
    task.claim("worker-1", T0)
    task.fail("boom", T0) if end == "fail" else task.cancel(T0)
    assert ledger.charge_for(task, "0.2", T0) is False
    assert ledger.balance == Decimal("5.000")


def test_a_task_of_another_user_is_not_charged_here() -> None:
    with pytest.raises(ValidationError, match="belongs to 'user-2'"):
        funded().charge_for(a_task("user-2"), "0.2", T0)


def test_a_zero_cost_records_nothing() -> None:
    ledger = funded()
    assert ledger.charge_task(uuid4(), 0, T0) is False
    assert ledger.entry_count == 1


@pytest.mark.parametrize("amount", ["-1", "abc", float("nan")])
def test_a_negative_or_non_numeric_amount_is_refused(amount: object) -> None:
    with pytest.raises(ValidationError):
        funded().charge_task(uuid4(), amount, T0)  # type: ignore[arg-type]


def test_a_grant_of_nothing_is_refused() -> None:
    with pytest.raises(ValidationError, match="more than 0"):
        CreditLedger.open("user-1").grant(0, "nothing", T0)


def test_a_top_up_with_a_seen_payment_reference_adds_nothing() -> None:
    ledger = CreditLedger.open("user-1")
    assert ledger.top_up(10, T0, reference="pay_123") is True
    assert ledger.top_up(10, T0, reference="pay_123") is False
    assert ledger.balance == Decimal("10.000")


def test_refunding_a_task_gives_back_its_spend_once() -> None:
    ledger = funded()
    task_id = uuid4()
    ledger.charge_task(task_id, "0.5", T0)
    assert ledger.refund_task(task_id, T0) is True
    assert ledger.refund_task(task_id, T0) is False
    assert kinds(ledger) == [GRANT, SPEND, REFUND]
    assert ledger.balance == Decimal("5.000")


def test_charging_stays_idempotent_after_a_refund() -> None:
    ledger = funded()
    task_id = uuid4()
    ledger.charge_task(task_id, "0.5", T0)
    ledger.refund_task(task_id, T0)
    assert ledger.charge_task(task_id, "0.5", T0) is False


def test_requiring_credit_refuses_an_empty_balance() -> None:
    ledger = funded("0.2")
    ledger.charge_task(uuid4(), "0.2", T0)
    with pytest.raises(InsufficientCreditsError, match=r"balance of 0\.000"):
        ledger.require_credit()


def test_entries_must_carry_an_aware_timestamp() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        funded().charge_task(uuid4(), "1", datetime(2026, 5, 1))


def test_a_ledger_survives_a_round_trip_through_an_application() -> None:
    ledger = funded()
    ledger.charge_task(uuid4(), "0.0278", T0)
    app: Application[UUID] = Application()
    app.save(ledger)
    loaded: Any = app.repository.get(CreditLedger.id_for("user-1"))
    assert (loaded.charges, loaded.references, loaded.entry_count) == (
        ledger.charges,
        ledger.references,
        ledger.entry_count,
    )
    assert loaded.balance == Decimal("4.972")


def test_the_ledger_remembers_only_the_latest_charges_but_every_credit() -> None:
    ledger = funded("100")
    tasks = [uuid4() for _ in range(RECENT_CHARGES + 200)]
    for task_id in tasks:
        ledger.charge_task(task_id, "0.01", T0)
    assert len(ledger.charges) == RECENT_CHARGES
    assert not ledger.has_charged(tasks[0]) and ledger.has_charged(tasks[-1])
    assert ledger.entry_count == len(tasks) + 1
    assert ledger.balance == Decimal("100") - Decimal("0.01") * len(tasks)
    assert ledger.has_reference("welcome") is False and ledger.top_up(1, T0, reference="p")
    assert ledger.top_up(1, T0, reference="p") is False


def test_a_refund_moves_a_charge_to_the_newest_end_of_the_window() -> None:
    ledger = funded()
    first, second = uuid4(), uuid4()
    ledger.charge_task(first, "0.5", T0)
    ledger.charge_task(second, "0.5", T0)
    ledger.refund_task(first, T0)
    assert list(ledger.charges) == [second, first]
    assert ledger.spent_on(first) == Decimal("0.000")

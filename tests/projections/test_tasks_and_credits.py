"""The task board, the claim queue and the credits view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.catalogue import resolve_default
from domain.credits import CreditLedger
from domain.task import Task
from projections.changelog import changes_since
from projections.views.credits import balance_of, ledger_of
from projections.views.tasks import claim_candidates, task_board, task_counts, task_row
from tests.projections.conftest import catch_up

pytestmark = pytest.mark.timeout(120)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def make_task(project_id, owner, at, deps=(), kind="image_generation", **params):
    return Task.create(
        project_id=project_id,
        owner_id=owner,
        task_type=resolve_default(kind),
        params={"prompt": "p", **params},
        at=at,
        dependant_on=deps,
    )


def test_the_board_shows_each_task_with_its_status_attempts_and_progress(
    app, database, schema, conn, project_id
):
    pid = app.project(project_id).id
    t = make_task(pid, "u", T0)
    app.save(t)
    t.claim("w1", T0 + timedelta(seconds=1))
    t.report_progress(1, 4)
    app.save(t)
    catch_up(app, database, schema)
    row = task_row(conn, t.id)
    assert (row["status"], row["worker_id"], row["progress"]) == (
        "In Progress",
        "w1",
        {"step": 1, "total": 4},
    )
    t.requeue("worker crashed", T0 + timedelta(seconds=5))
    app.save(t)
    catch_up(app, database, schema)
    row = task_row(conn, t.id)
    assert (row["status"], row["attempts"]) == ("Queued", 1)
    assert row["error"].startswith("Requeued: worker crashed")
    board = task_board(conn, project_id)
    assert [x["id"] for x in board["tasks"]] == [str(t.id)]
    assert board["counts"]["Queued"] == 1


def test_the_claim_queue_holds_queued_tasks_whose_dependencies_are_all_complete(
    app, database, schema, conn, project_id
):
    pid = app.project(project_id).id
    first = make_task(pid, "u", T0, kind="travel_segment")
    second = make_task(pid, "u", T0 + timedelta(seconds=1), deps=[first.id], kind="travel_segment")
    app.save(first, second)
    catch_up(app, database, schema)
    queued = [r["task_id"] for r in claim_candidates(conn, "gpu", limit=1000)]
    assert str(first.id) in queued and str(second.id) not in queued

    first.claim("w", T0 + timedelta(seconds=2))
    app.save(first)
    catch_up(app, database, schema)
    queued = [r["task_id"] for r in claim_candidates(conn, "gpu", limit=1000)]
    assert str(first.id) not in queued and str(second.id) not in queued

    first.complete("out.mp4", T0 + timedelta(seconds=3))
    app.save(first)
    catch_up(app, database, schema)
    queued = [r["task_id"] for r in claim_candidates(conn, "gpu", limit=1000)]
    assert str(second.id) in queued
    assert task_counts(conn, project_id)["Complete"] == 1


def test_a_released_task_is_claimable_again(app, database, schema, conn, project_id):
    pid = app.project(project_id).id
    t = make_task(pid, "u", T0)
    t.claim("w1", T0 + timedelta(seconds=1))
    app.save(t)
    catch_up(app, database, schema)
    assert str(t.id) not in [r["task_id"] for r in claim_candidates(conn, t.run_type, limit=1000)]
    before = app.head_position()
    t.release("dispatcher shutting down", T0 + timedelta(seconds=5))
    app.save(t)
    catch_up(app, database, schema)
    assert str(t.id) in [r["task_id"] for r in claim_candidates(conn, t.run_type, limit=1000)]
    row = task_row(conn, t.id)
    assert (row["status"], row["attempts"], row["worker_id"]) == ("Queued", 0, None)
    assert row["error"].startswith("Released: dispatcher shutting down")
    logged = changes_since(conn, [f"tasks:{project_id}"], before)
    assert [(r["kind"], r["payload"]["status"]) for r in logged] == [("task.upserted", "Queued")]


def test_credits_show_the_balance_and_the_ledger(app, database, schema, conn):
    ledger = CreditLedger.open("payer")
    ledger.grant(10, "welcome", T0)
    ledger.top_up("5.5", T0 + timedelta(seconds=1), reference="pay-1")
    app.save(ledger)
    catch_up(app, database, schema)
    assert balance_of(conn, "payer")["balance"] == "15.500"
    ledger.charge_task(ledger.id, "0.039", T0 + timedelta(seconds=2))
    app.save(ledger)
    catch_up(app, database, schema)
    assert balance_of(conn, "payer")["balance"] == "15.461"
    entries = ledger_of(conn, "payer")
    assert [(e["seq"], e["kind"], e["amount"]) for e in entries] == [
        (3, "spend", "-0.039"),
        (2, "top_up", "5.500"),
        (1, "grant", "10.000"),
    ]
    assert balance_of(conn, "nobody")["balance"] == "0.000"

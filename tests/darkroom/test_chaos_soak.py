"""The chaos soak's short form (issue 15, item 5): a whole local cluster (`darkroom
cluster`: PostgreSQL, Redis, a Ray head and a second Ray node, two api+hub nodes, two
projections processes, a dispatcher) under users writing through random nodes and
websocket clients resuming with `since`, while every kind of fault happens at least once
at a seeded random moment. Nothing acknowledged is lost or written twice, the views equal
a from-scratch fold, every client saw each change of its topics once and in order, every
task ends, and every balance is the welcome grant less what the completed tasks cost.

The long form is `python -m tests.darkroom.chaos --minutes 30` (docs/BENCHMARKS.md).
`DARKROOM_CHAOS_SEED` repeats a run's fault order (the seed is printed either way).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.darkroom import chaos

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

LOAD_S = 30.0  # faults go on past it until every kind happened once


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    seed = int(os.environ.get("DARKROOM_CHAOS_SEED") or secrets.randbelow(10**6))
    logs = tmp_path_factory.mktemp("chaos")
    # The cluster's PostgreSQL data not under pytest's tmp_path (every pytest run resets
    # its parent to 0700, and PostgreSQL runs as pgserver's own user); its logs are copied
    # there afterwards, where the suite's log check reads them.
    with tempfile.TemporaryDirectory(prefix="darkroom-chaos-") as root:
        try:
            result = chaos.soak(
                Path(root), seconds=LOAD_S, seed=seed, fault_gap=(1.0, 4.0), task_every=(3.0, 7.0)
            )
        finally:
            for found in Path(root).rglob("*.log"):
                if found.is_file():
                    shutil.copy(found, logs / f"{found.parent.name}-{found.name}")
    print(json.dumps(result, indent=2, default=str))  # shown with -s, or when a test fails
    return result


def test_every_kind_of_fault_happened_and_the_cluster_served_again(soaked: dict[str, Any]) -> None:
    assert set(soaked["faults_injected"]) >= set(chaos.FAULTS), soaked["faults_injected"]
    assert soaked["problems_by_check"]["faults"] == [], soaked["problems_by_check"]["faults"]
    assert set(soaked["recovery_s"]) >= set(chaos.FAULTS), soaked["recovery_s"]


def test_every_acknowledged_command_is_in_the_log_exactly_once(soaked: dict[str, Any]) -> None:
    log = soaked["log"]
    assert log["commands_acknowledged"] > 100, log
    assert (log["lost"], log["duplicated"]) == (0, 0), soaked["problems_by_check"]["log"]
    assert soaked["problems_by_check"]["log"] == []
    assert soaked["retries_total"] > 0, "no command met a fault"


def test_the_views_equal_a_from_scratch_fold(soaked: dict[str, Any]) -> None:
    assert soaked["views"]["view_rows"]["changelog"] > 0
    assert soaked["problems_by_check"]["views"] == []


def test_every_client_saw_each_change_of_its_topics_once_and_in_order(
    soaked: dict[str, Any],
) -> None:
    websockets = soaked["websockets"]
    assert websockets["changes_seen"] > 50, websockets
    assert websockets["connections"] > websockets["clients"], "no client ever resumed"
    assert soaked["problems_by_check"]["websockets"] == []


def test_every_task_ended_and_each_balance_is_the_grant_less_the_completed_tasks(
    soaked: dict[str, Any],
) -> None:
    tasks = soaked["tasks"]
    assert tasks["tasks_by_status"].get("Complete", 0) > 0, tasks
    assert tasks["tasks_charged_twice"] == 0
    assert soaked["problems_by_check"]["tasks"] == []


def test_no_request_was_answered_with_a_5xx_other_than_503(soaked: dict[str, Any]) -> None:
    assert soaked["http_5xx_other_than_503"] == 0, soaked["fivexx_examples"]
    assert soaked["refused"] == []  # nor given up: that is listed there too

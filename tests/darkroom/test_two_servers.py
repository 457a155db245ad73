"""Two `darkroom serve` processes on one schema, hammered at once: nothing lost, nothing twice.

Real servers (127.0.0.1, `DARKROOM_INFERENCE=off`, the same JWT secret), 4 client
threads each for about 8 s, on one owner's tasks (create, cancel) and one
generation (star/unstar, rename), every command under its own `Idempotency-Key`
and retried on 409 `concurrency_conflict` / 429 / 503 with that key. The run and
its checks are `bench/history_http.py --two-servers` (`two_servers`), shortened.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from darkroom.database import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import history_http

# Typically ~25 s; the bound leaves room for slow starts on a loaded 2-core box.
pytestmark = pytest.mark.timeout(600)

SECONDS, CLIENTS = 8.0, 4


def combined_patch_twice(servers: list[history_http.Served], studio: Any) -> dict[str, Any]:
    """One PATCH carrying both `starred` and `name`, sent twice under one key."""
    user = history_http.new_user("combined")
    with httpx.Client(
        base_url=servers[0].base,
        timeout=60,
        headers={"Authorization": f"Bearer {history_http.token(user)}"},
    ) as client:
        project = client.post("/api/projects", json={"name": "Combined"}).json()["id"]
        generation = client.post(
            "/api/generations", json={"project_id": project, "location": "/media/c.png"}
        ).json()["id"]
        answers = [
            client.patch(
                f"/api/generations/{generation}",
                json={"starred": True, "name": "both"},
                headers={"Idempotency-Key": "same-key"},
            )
            for _ in range(2)
        ]
    topics = [e["topic"] for e in studio.history(generation)]
    return {
        "statuses": [a.status_code for a in answers],
        "bodies": [a.json() for a in answers],
        "renamed": topics.count("darkroom.generation.renamed"),
        "starred": topics.count("darkroom.generation.starred"),
    }


@pytest.fixture(scope="module")
def run(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    result = history_http.two_servers(
        database,
        schema,
        tmp_path_factory.mktemp("two"),
        SECONDS,
        CLIENTS,
        while_up=combined_patch_twice,
    )
    history_http.print_two(result)  # shown with -s, or when a test fails
    return result


def test_both_servers_acknowledged_commands_of_every_kind(run: dict[str, Any]) -> None:
    assert set(run["acked_per_server"]) == {0, 1}, run["acked_per_server"]
    assert all(run["acked"].get(op, 0) > 0 for op in ("create", "cancel", "star", "rename"))
    assert run["refused"] == []


def test_no_request_was_answered_with_a_5xx(run: dict[str, Any]) -> None:
    assert run["fivexx"] == []
    assert run["server_log_errors"] == {}


def test_every_acknowledged_command_is_in_the_log_exactly_once(run: dict[str, Any]) -> None:
    assert run["log_problems"] == []
    log = run["log"]
    assert log["task_created_events"] == run["acked"]["create"]
    assert log["task_cancelled_events"] == run["acked"]["cancel"]
    assert log["renamed_events"] == run["acked"]["rename"]
    assert log["starred_events"] == log["star_acks_that_wrote"] <= run["acked"]["star"]


def test_the_views_hold_exactly_the_acknowledged_writes(run: dict[str, Any]) -> None:
    assert run["view_problems"] == []
    views = run["views"]
    assert views["views_at"] >= views["max_acked_position"]
    assert views["board_counts"].get("Cancelled", 0) == run["acked"]["cancel"]
    assert views["board_counts"].get("Queued", 0) == run["acked"]["create"] - run["acked"]["cancel"]


def test_a_star_and_rename_patch_repeated_under_one_key_writes_once(run: dict[str, Any]) -> None:
    """Both fields in one PATCH, sent twice under one key: one Starred, one Renamed (the
    rename used to run again on the repeat: it was saved under `meta.caused()`, which
    drops the key)."""
    probe = run["while_up"]
    assert probe["statuses"] == [200, 200]
    assert (probe["starred"], probe["renamed"]) == (1, 1), probe
    assert probe["bodies"][1].get("replayed") is True

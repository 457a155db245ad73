"""The task-type catalogue and credit top-ups over HTTP, through a real server."""

from __future__ import annotations

import uuid

from tests.realtime.api_harness import Server, error_of, ok, position, server

__all__ = ["server"]


def test_any_caller_reads_the_active_catalogue(server: Server) -> None:
    alice = server.user()
    types = {t["name"]: t for t in ok(alice.get("/api/task-types"))}
    assert types["image_upscale"]["is_active"] is True
    for row in types.values():
        assert {
            "run_type",
            "category",
            "billing_type",
            "base_cost_per_second",
            "unit_cost",
            "cost_factors",
            "variant_type",
            "is_active",
        } <= set(row)
    assert types["qwen_image"]["run_type"] == "api"
    assert types["qwen_image"]["billing_type"] == "per_unit"
    assert types["qwen_image"]["unit_cost"] == 0.039


def test_the_service_key_registers_deactivates_and_activates_a_type(server: Server) -> None:
    service, alice = server.service(), server.user()
    name = f"test_type_{uuid.uuid4().hex[:8]}"
    registered = service.post(
        "/api/task-types",
        json={
            "name": name,
            "run_type": "gpu",
            "category": "processing",
            "billing_type": "per_second",
            "base_cost_per_second": 0.5,
            "cost_factors": {"resolution": {"1080p": 2}},
            "variant_type": "upscaled",
        },
    )
    assert ok(registered, 201)["task_type"] == name
    listed = {t["name"]: t for t in ok(alice.get("/api/task-types"))}
    assert listed[name] | {"display_name": ""} == {
        "name": name,
        "display_name": "",
        "run_type": "gpu",
        "category": "processing",
        "billing_type": "per_second",
        "base_cost_per_second": 0.5,
        "unit_cost": 0,
        "cost_factors": {"resolution": {"1080p": 2}},
        "variant_type": "upscaled",
        "is_active": True,
        "supports_progress": False,
        "model_name": None,
        "description": "",
    }
    project = ok(alice.post("/api/projects", json={"name": "P"}), 201)["id"]
    ok(alice.post("/api/tasks", json={"task_type": name, "project_id": project, "params": {}}), 201)

    ok(service.post(f"/api/task-types/{name}/deactivate"))
    assert name not in {t["name"] for t in ok(alice.get("/api/task-types"))}
    error_of(
        alice.post("/api/tasks", json={"task_type": name, "project_id": project, "params": {}}), 422
    )
    ok(service.post(f"/api/task-types/{name}/deactivate"))  # already inactive: no change

    ok(service.post(f"/api/task-types/{name}/activate"))
    assert name in {t["name"] for t in ok(alice.get("/api/task-types"))}

    assert (
        error_of(service.post("/api/task-types/no_such_type/activate"), 422)["code"]
        == "unknown_task_type"
    )
    error_of(
        service.post(
            "/api/task-types",
            json={
                "name": "bad",
                "run_type": "cpu",
                "category": "processing",
                "billing_type": "per_second",
            },
        ),
        422,
    )
    error_of(
        service.post(
            "/api/task-types",
            json={
                "name": "bad",
                "run_type": "gpu",
                "category": "processing",
                "billing_type": "per_second",
                "unit_cost": -1,
            },
        ),
        422,
    )


def test_a_top_up_adds_credits_once_per_payment_reference(server: Server) -> None:
    service, alice = server.service(), server.user()
    user_id = alice.headers["X-Test-User"]
    paid = service.post(
        "/api/credits/top-up", json={"user_id": user_id, "amount": 7.5, "reference": "pay_123"}
    )
    body = ok(paid, 201)
    start = body["balance"] - 7.5  # the welcome grant, written on first sight
    assert body["added"] is True and body["user_id"] == user_id
    credits = ok(alice.get(f"/api/credits?min_position={position(paid)}"))
    assert credits["balance"] == start + 7.5
    assert ("top_up", 7.5) in [(e["kind"], e["amount"]) for e in credits["ledger"]]

    replayed = service.post(
        "/api/credits/top-up", json={"user_id": user_id, "amount": 7.5, "reference": "pay_123"}
    )
    again = ok(replayed, 200)
    assert again["added"] is False and again["balance"] == start + 7.5
    credits = ok(alice.get(f"/api/credits?min_position={position(replayed)}"))
    assert credits["balance"] == start + 7.5

    other = service.post(
        "/api/credits/top-up", json={"user_id": user_id, "amount": 1, "reference": "pay_124"}
    )
    assert ok(other, 201)["added"] is True
    assert ok(alice.get(f"/api/credits?min_position={position(other)}"))["balance"] == start + 8.5

    for bad in ({"amount": 0, "reference": "r"}, {"amount": 1, "reference": ""}, {"amount": 1}):
        error_of(service.post("/api/credits/top-up", json={"user_id": user_id, **bad}), 422)
    error_of(
        alice.post(
            "/api/credits/top-up", json={"user_id": user_id, "amount": 1, "reference": "mine"}
        ),
        403,
    )

"""The authorisation matrix: every route that takes an id, called by a second user with the
first user's ids, answers 404 (never 403: nobody learns another user's ids exist) and
writes nothing.

The table is checked against the declared endpoints, so a new route with an id cannot
be left out.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from realtime.api import ENDPOINTS
from tests.realtime.api_harness import Server, ok, server

__all__ = ["server"]

ZERO = "00000000-0000-0000-0000-000000000000"
KINDS = ("project", "shot", "generation", "variant", "task", "token", "resource")


def calls(ids: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) → the request a stranger sends with the owner's ids."""
    p, s, g, v, t, k, r = (
        ids[x] for x in ("project", "shot", "generation", "variant", "task", "token", "resource")
    )
    return {
        ("GET", "/api/projects/{id}"): {"url": f"/api/projects/{p}"},
        ("PUT", "/api/projects/{id}"): {"url": f"/api/projects/{p}", "json": {"name": "X"}},
        ("DELETE", "/api/projects/{id}"): {"url": f"/api/projects/{p}"},
        ("POST", "/api/projects/{id}/restore"): {"url": f"/api/projects/{p}/restore"},
        ("GET", "/api/shots"): {"url": f"/api/shots?projectId={p}"},
        ("POST", "/api/shots"): {"url": "/api/shots", "json": {"project_id": p, "name": "X"}},
        ("POST", "/api/shots/shot_generations"): {
            "url": "/api/shots/shot_generations",
            "json": {"shot_id": s, "generation_id": g},
        },
        ("GET", "/api/shots/{id}"): {"url": f"/api/shots/{s}"},
        ("PUT", "/api/shots/{id}"): {"url": f"/api/shots/{s}", "json": {"name": "X"}},
        ("DELETE", "/api/shots/{id}"): {"url": f"/api/shots/{s}"},
        ("POST", "/api/shots/{id}/restore"): {"url": f"/api/shots/{s}/restore"},
        ("POST", "/api/shots/{id}/duplicate"): {"url": f"/api/shots/{s}/duplicate"},
        ("PUT", "/api/shots/{id}/generations/order"): {
            "url": f"/api/shots/{s}/generations/order",
            "json": {"orderedGenerationIds": [g]},
        },
        ("DELETE", "/api/shots/{id}/generations/{generation_id}"): {
            "url": f"/api/shots/{s}/generations/{g}"
        },
        ("POST", "/api/shots/{id}/fix-spacing"): {"url": f"/api/shots/{s}/fix-spacing"},
        ("PATCH", "/api/shots/{id}/generations/{generation_id}"): {
            "url": f"/api/shots/{s}/generations/{g}",
            "json": {"timeline_frame": 7},
        },
        ("PATCH", "/api/shots/{id}/memberships/{membership_id}"): {
            "url": f"/api/shots/{s}/memberships/{g}",
            "json": {"timeline_frame": None},
        },
        ("PUT", "/api/projects/{id}/shots/order"): {
            "url": f"/api/projects/{p}/shots/order",
            "json": {"shot_ids": [s]},
        },
        ("GET", "/api/generations"): {"url": f"/api/generations?projectId={p}"},
        ("POST", "/api/generations"): {
            "url": "/api/generations",
            "json": {"project_id": p, "location": "/m/x.png"},
        },
        ("GET", "/api/generations/{id}"): {"url": f"/api/generations/{g}"},
        ("PATCH", "/api/generations/{id}"): {
            "url": f"/api/generations/{g}",
            "json": {"starred": True},
        },
        ("DELETE", "/api/generations/{id}"): {"url": f"/api/generations/{g}"},
        ("POST", "/api/generations/{id}/restore"): {"url": f"/api/generations/{g}/restore"},
        ("GET", "/api/generations/{id}/children"): {"url": f"/api/generations/{g}/children"},
        ("GET", "/api/generations/{id}/lineage"): {"url": f"/api/generations/{g}/lineage"},
        ("GET", "/api/generations/{id}/variants"): {"url": f"/api/generations/{g}/variants"},
        ("POST", "/api/generations/{id}/variants"): {
            "url": f"/api/generations/{g}/variants",
            "json": {"location": "/m/y.png"},
        },
        ("POST", "/api/generations/{id}/variants/{variant_id}/primary"): {
            "url": f"/api/generations/{g}/variants/{v}/primary"
        },
        ("DELETE", "/api/generations/{id}/variants/{variant_id}"): {
            "url": f"/api/generations/{g}/variants/{v}"
        },
        ("PATCH", "/api/generations/{id}/variants/{variant_id}"): {
            "url": f"/api/generations/{g}/variants/{v}",
            "json": {"starred": True},
        },
        ("POST", "/api/tasks"): {
            "url": "/api/tasks",
            "json": {
                "task_type": "image_upscale",
                "project_id": p,
                "params": {"image_url": "/m/x"},
            },
        },
        ("GET", "/api/tasks"): {"url": f"/api/tasks?projectId={p}"},
        ("POST", "/api/tasks/cancel-pending"): {
            "url": "/api/tasks/cancel-pending",
            "json": {"project_id": p},
        },
        ("GET", "/api/tasks/{id}"): {"url": f"/api/tasks/{t}"},
        ("GET", "/api/generations/{id}/task"): {"url": f"/api/generations/{g}/task"},
        ("PATCH", "/api/tasks/{id}/cancel"): {"url": f"/api/tasks/{t}/cancel"},
        ("PATCH", "/api/tasks/{id}/status"): {
            "url": f"/api/tasks/{t}/status",
            "json": {"status": "Cancelled"},
        },
        ("POST", "/api/steerable-motion/travel-between-images"): {
            "url": "/api/steerable-motion/travel-between-images",
            "json": {"project_id": p, "image_urls": ["/a", "/b"], "base_prompts": ["go"]},
        },
        ("POST", "/api/tasks/{id}/complete"): {
            "url": f"/api/tasks/{t}/complete",
            "json": {"output_location": "/m/o.png"},
        },
        ("POST", "/api/tasks/{id}/fail"): {
            "url": f"/api/tasks/{t}/fail",
            "json": {"error_message": "no"},
        },
        ("POST", "/api/tasks/{id}/release"): {"url": f"/api/tasks/{t}/release", "json": {}},
        ("DELETE", "/api/tokens/{id}"): {"url": f"/api/tokens/{k}"},
        ("GET", "/api/resources/{id}"): {"url": f"/api/resources/{r}"},
        ("DELETE", "/api/resources/{id}"): {"url": f"/api/resources/{r}"},
        ("POST", "/api/task-types/{name}/activate"): {
            "url": "/api/task-types/image_upscale/activate"
        },
        ("POST", "/api/task-types/{name}/deactivate"): {
            "url": "/api/task-types/image_upscale/deactivate"
        },
        ("GET", "/api/history/{id}"): {"url": f"/api/history/{g}"},
        ("GET", "/api/projections/{name}/rebuild"): {"url": "/api/projections/gallery/rebuild"},
        ("POST", "/api/projections/{name}/retry"): {"url": "/api/projections/gallery/retry"},
        ("POST", "/api/projections/{name}/rebuild"): {"url": "/api/projections/gallery/rebuild"},
    }


def takes_an_id(endpoint: Any) -> bool:
    fields: set[str] = set()
    for model in (endpoint.body, endpoint.query):
        if model is not None:
            fields |= set(model.model_fields)
    return bool(endpoint.path_params) or bool(fields & {"project_id", "shot_id"})


def test_the_matrix_covers_every_route_that_takes_an_id() -> None:
    declared = {(e.method, e.path) for e in ENDPOINTS if takes_an_id(e)}
    table = set(calls(dict.fromkeys(KINDS, ZERO)))
    assert declared == table


@pytest.fixture(scope="module")
def owned(server: Server) -> dict[str, Any]:
    alice = server.user()
    project = ok(alice.post("/api/projects", json={"name": "Mine"}), 201)["id"]
    shot = ok(alice.post("/api/shots", json={"project_id": project, "name": "S"}), 201)["id"]
    made = ok(
        alice.post(
            "/api/generations",
            json={"project_id": project, "location": "/m/a.png", "shot_id": shot},
        ),
        201,
    )
    variant = ok(
        alice.post(f"/api/generations/{made['id']}/variants", json={"location": "/m/b.png"}), 201
    )["id"]
    task = ok(
        alice.post(
            "/api/tasks",
            json={
                "task_type": "image_upscale",
                "project_id": project,
                "params": {"image_url": "/m/a.png"},
            },
        ),
        201,
    )["task_id"]
    token = ok(alice.post("/api/tokens", json={"label": "mine"}), 201)["id"]
    resource = ok(
        alice.post(
            "/api/resources/url",
            json={"name": "Mine", "url": "https://example.com/mine.safetensors"},
        ),
        201,
    )["id"]
    return {
        "alice": alice,
        "ids": {
            "project": project,
            "shot": shot,
            "generation": made["id"],
            "variant": variant,
            "task": task,
            "token": token,
            "resource": resource,
        },
    }


def head(client: httpx.Client) -> int:
    return int(ok(client.get("/health"))["head_position"])


WORKER_ROUTES = {(e.method, e.path) for e in ENDPOINTS if e.auth == "worker"}
SERVICE_ROUTES = {(e.method, e.path) for e in ENDPOINTS if e.auth == "service"}


@pytest.fixture(scope="module")
def strangers(server: Server) -> dict[str, httpx.Client]:
    """Bob with a JWT and bob with a personal access token (his welcome grant written)."""
    bob = server.user()
    pat = ok(bob.post("/api/tokens", json={"label": "worker"}), 201)["token"]
    return {"jwt": bob, "pat": server.client(pat)}


@pytest.mark.parametrize("credential", ["jwt", "pat"])
@pytest.mark.parametrize("route", sorted(calls(dict.fromkeys(KINDS, ZERO))))
def test_a_second_user_gets_404_for_the_first_users_ids_and_changes_nothing(
    server: Server,
    owned: dict[str, Any],
    strangers: dict[str, httpx.Client],
    route: tuple[str, str],
    credential: str,
) -> None:
    bob = strangers[credential]
    request = calls(owned["ids"])[route]
    before = head(bob)
    answer = bob.request(route[0], request["url"], json=request.get("json"))
    # Worker routes refuse a JWT outright (403) before looking at any id; service routes
    # refuse every user credential.
    expected = (
        403
        if ((credential == "jwt" and route in WORKER_ROUTES) or route in SERVICE_ROUTES)
        else 404
    )
    assert answer.status_code == expected, (route, answer.status_code, answer.text)
    assert head(bob) == before


def test_the_owner_still_sees_everything_unchanged(server: Server, owned: dict[str, Any]) -> None:
    alice, ids = owned["alice"], owned["ids"]
    at = f"?min_position={head(alice)}"
    assert ok(alice.get(f"/api/projects/{ids['project']}{at}"))["name"] == "Mine"
    shot = ok(alice.get(f"/api/shots/{ids['shot']}{at}"))
    assert shot["name"] == "S" and len(shot["images"]) == 1
    assert ok(alice.get(f"/api/generations/{ids['generation']}{at}"))["starred"] is False
    assert ok(alice.get(f"/api/tasks/{ids['task']}{at}"))["status"] == "Queued"
    assert [t["label"] for t in ok(alice.get("/api/tokens"))] == ["mine"]


SERVICE_CALLS = {
    ("GET", "/api/workers"): None,
    ("POST", "/api/credits/grant"): {"user_id": "x", "amount": 1, "reason": "gift"},
    ("POST", "/api/credits/top-up"): {"user_id": "x", "amount": 1, "reference": "pay_1"},
    ("POST", "/api/task-types"): {
        "name": "mine",
        "run_type": "api",
        "category": "utility",
        "billing_type": "per_unit",
    },
    ("POST", "/api/task-types/{name}/activate"): None,
    ("POST", "/api/task-types/{name}/deactivate"): None,
    ("GET", "/api/projections"): None,
    ("GET", "/api/projections/{name}/rebuild"): None,
    ("POST", "/api/projections/{name}/retry"): None,
    ("POST", "/api/projections/{name}/rebuild"): None,
}


def test_the_service_table_covers_every_service_route() -> None:
    assert set(SERVICE_CALLS) == SERVICE_ROUTES


@pytest.mark.parametrize("credential", ["jwt", "pat"])
@pytest.mark.parametrize("route", sorted(SERVICE_CALLS))
def test_service_routes_refuse_a_users_jwt_and_token_with_403_and_change_nothing(
    server: Server, strangers: dict[str, httpx.Client], route: tuple[str, str], credential: str
) -> None:
    client = strangers[credential]
    before = head(client)
    url = route[1].replace("{name}", "image_upscale")
    answer = client.request(route[0], url, json=SERVICE_CALLS[route])
    assert answer.status_code == 403, (route, answer.status_code, answer.text)
    assert answer.json()["code"] == "service_only"
    assert head(client) == before

"""LoRA resources through a real server: upload (checked), URL, listing in pages, reading,
deleting, and tasks naming them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.domain.test_resources import PAIR, safetensors
from tests.realtime.api_harness import Server, error_of, ok, position, server
from tests.realtime.test_api_credentials import configured, quota_user

__all__ = ["configured", "server"]


def head(client: httpx.Client) -> int:
    return int(ok(client.get("/health"))["head_position"])


def upload(
    client: httpx.Client,
    data: bytes,
    name: str | None = "Film grain",
    filename: str = "grain.safetensors",
) -> httpx.Response:
    return client.post(
        "/api/resources", files={"file": (filename, data)}, data={"name": name} if name else {}
    )


def bare(location: str) -> str:
    """A media URL as the API answers it, less its signature."""
    return location.split("?", 1)[0]


def stored(server: Server, location: str) -> bool:
    return (server.data_dir / "media" / bare(location).removeprefix("/media/")).is_file()


@pytest.fixture(scope="module")
def alice(server: Server) -> httpx.Client:
    return server.user()


def test_an_uploaded_lora_is_checked_kept_listed_and_read_back(
    server: Server, alice: httpx.Client
) -> None:
    made = upload(alice, safetensors(PAIR))
    body = ok(made, 201)
    assert (body["name"], body["type"], body["url"]) == ("Film grain", "lora", None)
    assert body["metadata"] == {
        "format": "safetensors",
        "tensors": 2,
        "rank": 4,
        "targets": ["unet"],
        "dtypes": ["F32"],
    }
    assert len(body["sha256"]) == 64 and body["size"] == len(safetensors(PAIR))
    assert stored(server, body["location"])
    at = f"min_position={position(made)}"
    read = ok(alice.get(f"/api/resources/{body['id']}?{at}"))
    assert (read["id"], read["name"], read["metadata"]) == (
        body["id"],
        "Film grain",
        body["metadata"],
    )
    listed = ok(alice.get(f"/api/resources?{at}"))
    assert body["id"] in [r["id"] for r in listed["items"]]


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(64),
        safetensors({"model.weight": ("F32", [2, 2])}),
        safetensors(PAIR, lie=5),
    ],
)
def test_bytes_that_are_not_a_lora_are_refused_with_422_and_nothing_is_kept(
    server: Server, alice: httpx.Client, data: bytes
) -> None:
    before = head(alice)
    files = set((server.data_dir / "media").rglob("*"))
    assert error_of(upload(alice, data), 422)["code"] == "invalid_lora"
    assert head(alice) == before
    assert set((server.data_dir / "media").rglob("*")) == files


def test_a_lora_by_url_is_registered_without_fetching(alice: httpx.Client) -> None:
    made = ok(
        alice.post(
            "/api/resources/url",
            json={"name": "Remote", "url": "http://127.0.0.1:9/never-fetched.safetensors"},
        ),
        201,
    )
    assert (made["url"], made["location"], made["size"]) == (
        "http://127.0.0.1:9/never-fetched.safetensors",
        None,
        None,
    )
    assert (
        error_of(
            alice.post("/api/resources/url", json={"name": "Bad", "url": "ftp://example.com/x"}),
            422,
        )["code"]
        == "invalid_fields"
    )


def test_the_listing_comes_in_keyset_pages_newest_first(server: Server) -> None:
    bob = server.user()
    ids = []
    for n in range(3):
        made = bob.post(
            "/api/resources/url", json={"name": f"L{n}", "url": f"https://example.com/{n}"}
        )
        ids.append(ok(made, 201)["id"])
    at = f"min_position={position(made)}"
    first = ok(bob.get(f"/api/resources?limit=2&{at}"))
    second = ok(bob.get(f"/api/resources?limit=2&cursor={first['next_cursor']}&{at}"))
    assert [r["id"] for r in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None


def test_another_users_lora_answers_404_everywhere_and_changes_nothing(
    server: Server, alice: httpx.Client
) -> None:
    made = upload(alice, safetensors(PAIR), name="Mine")
    mine = ok(made, 201)
    bob = server.user()
    project = ok(bob.post("/api/projects", json={"name": "Bob's"}), 201)["id"]
    before = head(bob)
    at = f"min_position={position(made)}"
    assert error_of(bob.get(f"/api/resources/{mine['id']}?{at}"), 404)["code"] == "not_found"
    assert error_of(bob.delete(f"/api/resources/{mine['id']}"), 404)["code"] == "not_found"
    assert mine["id"] not in [r["id"] for r in ok(bob.get(f"/api/resources?{at}"))["items"]]
    task = bob.post(
        "/api/tasks",
        json={
            "task_type": "image_generation",
            "project_id": project,
            "params": {"prompt": "x", "loras": [{"resource_id": mine["id"], "strength": 1}]},
        },
    )
    assert error_of(task, 404)["code"] == "not_found"
    assert head(bob) == before


def test_a_task_names_a_lora_by_id_and_carries_its_file_and_strength(alice: httpx.Client) -> None:
    lora = ok(upload(alice, safetensors(PAIR), name="Grain"), 201)
    project = ok(alice.post("/api/projects", json={"name": "Film"}), 201)["id"]
    made = alice.post(
        "/api/tasks",
        json={
            "family": "image_generation",
            "project_id": project,
            "input": {
                "prompts": ["a fox"],
                "loras": [{"resource_id": lora["id"], "strength": 0.7}],
            },
        },
    )
    task = ok(made, 201)["task_ids"][0]
    details = ok(alice.get(f"/api/tasks/{task}?min_position={position(made)}"))
    [applied] = details["params"]["loras"]
    assert (applied["resource_id"], applied["strength"], applied["name"]) == (
        lora["id"],
        0.7,
        "Grain",
    )
    assert bare(applied["path"]) == bare(lora["location"])
    assert error_of(
        alice.post(
            "/api/tasks",
            json={
                "family": "image_generation",
                "project_id": project,
                "input": {"prompts": ["a fox"], "loras": [{"strength": 1}]},
            },
        ),
        422,
    )


def test_a_deleted_lora_leaves_the_listing_its_file_and_new_tasks(
    server: Server, alice: httpx.Client
) -> None:
    lora = ok(upload(alice, safetensors(PAIR), name="Gone"), 201)
    project = ok(alice.post("/api/projects", json={"name": "P"}), 201)["id"]
    gone = alice.delete(f"/api/resources/{lora['id']}")
    assert ok(gone)["deleted"] is True
    at = f"min_position={position(gone)}"
    assert error_of(alice.get(f"/api/resources/{lora['id']}?{at}"), 404)
    assert lora["id"] not in [r["id"] for r in ok(alice.get(f"/api/resources?{at}"))["items"]]
    assert not stored(server, lora["location"])
    error_of(alice.delete(f"/api/resources/{lora['id']}"), 404)
    task: dict[str, Any] = {
        "task_type": "image_generation",
        "project_id": project,
        "params": {"loras": [{"resource_id": lora["id"]}]},
    }
    assert error_of(alice.post("/api/tasks", json=task), 404)["code"] == "not_found"


def big_lora(width: int) -> bytes:
    """A LoRA of about 32 * `width` bytes."""
    return safetensors(
        {
            "unet.q.lora.down.weight": ("F32", [4, width]),
            "unet.q.lora.up.weight": ("F32", [width, 4]),
        }
    )


def test_a_lora_upload_counts_in_the_daily_upload_quota(configured: Server) -> None:
    user = quota_user(configured)  # quota: 200 KiB a day
    ok(upload(user, big_lora(3840)), 201)  # ~120 KiB
    before = head(user)
    refusal = upload(user, big_lora(3840))
    assert error_of(refusal, 429)["code"] == "upload_quota_exceeded"
    assert head(user) == before
    assert len(ok(user.get("/api/resources"))["items"]) == 1

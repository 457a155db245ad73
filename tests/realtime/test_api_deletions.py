"""Deletes and restores over HTTP: what each view shows when an aggregate its rows
reference is deleted or restored (issue 13)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.realtime.api_harness import Server, error_of, ok, position, server

__all__ = ["server"]


def project(client: httpx.Client, name: str = "Film") -> str:
    return str(ok(client.post("/api/projects", json={"name": name}), 201)["id"])


def image(client: httpx.Client, project_id: str, **kw: Any) -> str:
    return str(
        ok(
            client.post(
                "/api/generations",
                json={"project_id": project_id, "location": "/media/a.png", **kw},
            ),
            201,
        )["id"]
    )


def at(client: httpx.Client, path: str, written: httpx.Response) -> httpx.Response:
    sep = "&" if "?" in path else "?"
    return client.get(f"{path}{sep}min_position={position(written)}")


def shot_with(client: httpx.Client, project_id: str, count: int) -> tuple[str, list[str]]:
    shot = ok(client.post("/api/shots", json={"project_id": project_id, "name": "S"}), 201)["id"]
    return shot, [image(client, project_id, shot_id=shot) for _ in range(count)]


def test_a_deleted_generation_leaves_its_shots_and_a_travel_over_them(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    shot, (a, b, c) = shot_with(alice, pid, 3)
    deleted = alice.delete(f"/api/generations/{b}")
    ok(deleted)
    read = ok(at(alice, f"/api/shots/{shot}", deleted))
    assert [m["generation_id"] for m in read["images"]] == [a, c]
    assert [m["position"] for m in read["images"]] == [0, 1]
    assert read["member_count"] == 2
    listed = ok(at(alice, f"/api/shots?projectId={pid}", deleted))
    assert [m["generation_id"] for m in listed[0]["images"]] == [a, c]
    run = ok(
        alice.post(
            "/api/steerable-motion/travel-between-images",
            json={"project_id": pid, "shot_id": shot, "base_prompts": ["go"]},
        ),
        201,
    )
    segment = ok(
        alice.get(f"/api/tasks/{run['segment_task_ids'][0]}?min_position={run['position']}")
    )
    assert len(run["segment_task_ids"]) == 1 and segment["task_type"]


def test_a_deleted_projects_shots_generations_and_variants_answer_404(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    shot, (g,) = shot_with(alice, pid, 1)
    deleted = alice.delete(f"/api/projects/{pid}")
    ok(deleted)
    for path in (
        f"/api/shots/{shot}",
        f"/api/generations/{g}",
        f"/api/generations/{g}/variants",
        f"/api/shots?projectId={pid}",
        f"/api/generations?projectId={pid}",
    ):
        error_of(at(alice, path, deleted), 404)


def test_a_deleted_project_is_listed_in_the_bin_and_restored_with_everything_in_it(
    server: Server,
) -> None:
    alice = server.user()
    pid = project(alice, "Bin")
    shot, (g,) = shot_with(alice, pid, 1)
    deleted = alice.delete(f"/api/projects/{pid}")
    ok(deleted)
    binned = ok(at(alice, "/api/projects?deleted=true", deleted))
    assert [p["id"] for p in binned] == [pid]
    assert pid not in {p["id"] for p in ok(at(alice, "/api/projects", deleted))}
    error_of(server.user().post(f"/api/projects/{pid}/restore"), 404)
    restored = alice.post(f"/api/projects/{pid}/restore")
    assert ok(restored)["project_id"] == pid
    assert ok(at(alice, f"/api/projects/{pid}", restored))["name"] == "Bin"
    assert ok(at(alice, "/api/projects?deleted=true", restored)) == []
    assert [
        m["generation_id"] for m in ok(at(alice, f"/api/shots/{shot}", restored))["images"]
    ] == [g]
    assert ok(at(alice, f"/api/generations/{g}", restored))["id"] == g
    error_of(alice.post(f"/api/projects/{pid}/restore"), 422)  # not deleted


def test_a_deleted_generation_is_listed_in_the_bin_and_restored_into_its_shots(
    server: Server,
) -> None:
    alice = server.user()
    pid = project(alice)
    shot, (a, b) = shot_with(alice, pid, 2)
    deleted = alice.delete(f"/api/generations/{a}")
    ok(deleted)
    binned = ok(at(alice, f"/api/generations?projectId={pid}&deleted=true", deleted))
    assert [g["id"] for g in binned["items"]] == [a] and binned["items"][0]["deleted"]
    gallery = ok(at(alice, f"/api/generations?projectId={pid}", deleted))
    assert [g["id"] for g in gallery["items"]] == [b]
    error_of(alice.get(f"/api/generations/{a}"), 404)
    restored = alice.post(f"/api/generations/{a}/restore")
    assert ok(restored)["generation_id"] == a
    read = ok(at(alice, f"/api/shots/{shot}", restored))
    assert [(m["generation_id"], m["position"]) for m in read["images"]] == [(a, 0), (b, 1)]
    assert ok(at(alice, f"/api/generations/{a}", restored))["deleted"] is False
    assert ok(at(alice, f"/api/generations?projectId={pid}&deleted=true", restored))["items"] == []
    error_of(alice.post(f"/api/generations/{a}/restore"), 422)  # not deleted
    bob = server.user()
    error_of(bob.get(f"/api/generations?projectId={pid}&deleted=true"), 404)
    assert ok(bob.get("/api/projects?deleted=true")) == []


def test_a_generation_in_a_deleted_project_is_restored_only_with_the_project(
    server: Server,
) -> None:
    alice = server.user()
    pid = project(alice)
    g = image(alice, pid)
    ok(alice.delete(f"/api/generations/{g}"))
    ok(alice.delete(f"/api/projects/{pid}"))
    error_of(alice.post(f"/api/generations/{g}/restore"), 404)
    error_of(alice.get(f"/api/generations?projectId={pid}&deleted=true"), 404)
    ok(alice.post(f"/api/projects/{pid}/restore"))
    restored = alice.post(f"/api/generations/{g}/restore")
    ok(restored)
    assert [
        x["id"] for x in ok(at(alice, f"/api/generations?projectId={pid}", restored))["items"]
    ] == [g]

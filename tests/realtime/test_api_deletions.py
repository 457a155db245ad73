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
    return str(ok(client.post("/api/generations", json={
        "project_id": project_id, "location": "/media/a.png", **kw}), 201)["id"])


def at(client: httpx.Client, path: str, written: httpx.Response) -> httpx.Response:
    sep = "&" if "?" in path else "?"
    return client.get(f"{path}{sep}min_position={position(written)}")


def shot_with(client: httpx.Client, project_id: str, count: int) -> tuple[str, list[str]]:
    shot = ok(client.post("/api/shots", json={"project_id": project_id, "name": "S"}),
              201)["id"]
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
    run = ok(alice.post("/api/steerable-motion/travel-between-images", json={
        "project_id": pid, "shot_id": shot, "base_prompts": ["go"]}), 201)
    segment = ok(alice.get(f"/api/tasks/{run['segment_task_ids'][0]}"
                           f"?min_position={run['position']}"))
    assert len(run["segment_task_ids"]) == 1 and segment["task_type"]


def test_a_deleted_projects_shots_generations_and_variants_answer_404(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    shot, (g,) = shot_with(alice, pid, 1)
    deleted = alice.delete(f"/api/projects/{pid}")
    ok(deleted)
    for path in (f"/api/shots/{shot}", f"/api/generations/{g}",
                 f"/api/generations/{g}/variants", f"/api/shots?projectId={pid}",
                 f"/api/generations?projectId={pid}"):
        error_of(at(alice, path, deleted), 404)

"""A composite's children, lineage (based_on up and down) and the gallery's toolType
filter, through a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from darkroom.database import Database
from tests.realtime.api_harness import Server, error_of, ok, position, start_server, stop_server
from tests.realtime.test_api_workers import claim, user_with_credits, wid, worker_of


@pytest.fixture(scope="module")
def server(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(
        database, schema, tmp_path_factory.mktemp("lineage"), DARKROOM_WELCOME_CREDITS="0"
    )
    yield running
    stop_server(running)


def upload(client: httpx.Client, project: str, **kw: Any) -> httpx.Response:
    return client.post(
        "/api/generations", json={"project_id": project, "location": "/media/a.png", **kw}
    )


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


def test_a_composites_children_list_in_child_order_in_pages(server: Server) -> None:
    alice, _ = user_with_credits(server)
    worker = worker_of(server, alice)
    project = ok(alice.post("/api/projects", json={"name": "Film"}), 201)["id"]
    parent = ok(upload(alice, project, type="video", location="/media/p.mp4"), 201)["id"]
    made: dict[int, str] = {}
    done: httpx.Response | None = None
    for order in (2, 0, 1):
        task = ok(
            alice.post(
                "/api/tasks",
                json={
                    "task_type": "image_generation",
                    "project_id": project,
                    "params": {
                        "prompt": "a fox",
                        "parent_generation_id": parent,
                        "child_order": order,
                    },
                },
            ),
            201,
        )["task_id"]
        assert ok(claim(worker))["task_id"] == task
        done = worker.post(
            f"/api/tasks/{task}/complete",
            json={"worker_id": wid(worker), "output_location": f"/media/c{order}.png"},
        )
        made[order] = ok(done)["generation_id"]
    assert done is not None
    at = position(done)
    listed = ok(alice.get(f"/api/generations/{parent}/children?min_position={at}"))
    assert ids(listed["items"]) == [made[0], made[1], made[2]]
    assert [r["child_order"] for r in listed["items"]] == [0, 1, 2]
    assert listed["next_cursor"] is None
    first = ok(alice.get(f"/api/generations/{parent}/children?limit=2"))
    assert ids(first["items"]) == [made[0], made[1]]
    rest = ok(
        alice.get(f"/api/generations/{parent}/children?limit=2&cursor={first['next_cursor']}")
    )
    assert ids(rest["items"]) == [made[2]] and rest["next_cursor"] is None
    # Children stay out of the gallery; an image without children lists none.
    assert ok(alice.get(f"/api/generations/{made[0]}/children"))["items"] == []
    error_of(alice.get(f"/api/generations/{parent}/children?cursor=nope"), 422)
    bob = server.user()
    error_of(bob.get(f"/api/generations/{parent}/children"), 404)


def test_lineage_walks_based_on_up_and_lists_derivatives_in_pages(server: Server) -> None:
    alice = server.user()
    project = ok(alice.post("/api/projects", json={"name": "Film"}), 201)["id"]
    root = ok(upload(alice, project), 201)["id"]
    middle = ok(upload(alice, project, based_on=root), 201)["id"]
    leaf = ok(upload(alice, project, based_on=middle), 201)["id"]
    others = [ok(upload(alice, project, based_on=middle), 201)["id"] for _ in range(2)]
    last = upload(alice, project, based_on=root)
    sibling = ok(last, 201)["id"]
    at = position(last)
    of_leaf = ok(alice.get(f"/api/generations/{leaf}/lineage?min_position={at}"))
    assert of_leaf["generation_id"] == leaf
    assert ids(of_leaf["ancestors"]) == [middle, root]
    assert of_leaf["ancestors_truncated"] is False and of_leaf["derivatives"] == []
    of_middle = ok(alice.get(f"/api/generations/{middle}/lineage"))
    assert ids(of_middle["ancestors"]) == [root]
    assert ids(of_middle["derivatives"]) == [*reversed(others), leaf]  # newest first
    paged = ok(alice.get(f"/api/generations/{middle}/lineage?limit=2"))
    assert ids(paged["derivatives"]) == list(reversed(others))
    more = ok(alice.get(f"/api/generations/{middle}/lineage?limit=2&cursor={paged['next_cursor']}"))
    assert ids(more["derivatives"]) == [leaf] and more["next_cursor"] is None
    of_root = ok(alice.get(f"/api/generations/{root}/lineage"))
    assert of_root["ancestors"] == [] and ids(of_root["derivatives"]) == [sibling, middle]
    # Bounded depth.
    short = ok(alice.get(f"/api/generations/{leaf}/lineage?depth=1"))
    assert ids(short["ancestors"]) == [middle] and short["ancestors_truncated"] is True
    error_of(alice.get(f"/api/generations/{leaf}/lineage?depth=51"), 422)
    # A deleted generation leaves the lineage (its own chain stops there).
    gone = alice.delete(f"/api/generations/{middle}")
    ok(gone)
    after = ok(alice.get(f"/api/generations/{leaf}/lineage?min_position={position(gone)}"))
    assert after["ancestors"] == []
    assert ids(ok(alice.get(f"/api/generations/{root}/lineage"))["derivatives"]) == [sibling]
    bob = server.user()
    error_of(bob.get(f"/api/generations/{leaf}/lineage"), 404)


def test_the_gallery_filters_by_tool_type(server: Server) -> None:
    alice = server.user()
    project = ok(alice.post("/api/projects", json={"name": "Film"}), 201)["id"]
    edit = ok(upload(alice, project, params={"tool_type": "image-edit"}), 201)["id"]
    ok(upload(alice, project, params={"tool_type": "travel"}), 201)
    last = upload(alice, project)
    ok(last, 201)
    listed = ok(
        alice.get(
            f"/api/generations?projectId={project}&toolType=image-edit"
            f"&min_position={position(last)}"
        )
    )
    assert ids(listed["items"]) == [edit]
    assert ok(alice.get(f"/api/generations?projectId={project}&tool_type=none"))["items"] == []
    assert len(ok(alice.get(f"/api/generations?projectId={project}"))["items"]) == 3
    for bad in ("", "a%20b", "x" * 101):
        error_of(alice.get(f"/api/generations?projectId={project}&toolType={bad}"), 422)

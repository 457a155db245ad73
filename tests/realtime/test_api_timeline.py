"""Timeline editing over HTTP (issue 13): moving a shot's members (by generation or by
membership id), taking them off the timeline, and reordering a project's shots."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.realtime.api_harness import Server, error_of, ok, position, server

__all__ = ["server"]


@pytest.fixture(scope="module")
def alice(server: Server) -> httpx.Client:
    return server.user()


def shot_at(client: httpx.Client, shot: str, response: httpx.Response) -> dict[str, Any]:
    return ok(client.get(f"/api/shots/{shot}?min_position={position(response)}"))  # type: ignore[no-any-return]


def frames(shot: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(i["shot_generation_id"], i["timeline_frame"]) for i in shot["images"]]


def test_a_generation_moves_on_the_timeline_and_null_takes_it_off(alice: httpx.Client) -> None:
    project = ok(alice.post("/api/projects", json={"name": "Timeline"}), 201)["id"]
    shot = ok(alice.post("/api/shots", json={"project_id": project, "name": "S"}), 201)["id"]
    a, b = (
        ok(
            alice.post(
                "/api/generations",
                json={"project_id": project, "location": f"/m/{n}.png", "shot_id": shot},
            ),
            201,
        )["id"]
        for n in "ab"
    )
    moved = alice.patch(f"/api/shots/{shot}/generations/{b}", json={"timeline_frame": 25})
    answer = ok(moved)
    assert (answer["generation_id"], answer["timeline_frame"]) == (b, 25)
    images = shot_at(alice, shot, moved)["images"]
    assert [(i["generation_id"], i["timeline_frame"], i["position"]) for i in images] == [
        (a, 0, 0),
        (b, 25, 1),
    ]
    # camelCase, and a frame before the first image reorders the timeline.
    moved = alice.patch(f"/api/shots/{shot}/generations/{b}", json={"timelineFrame": 0})
    ok(moved)
    off = alice.patch(f"/api/shots/{shot}/generations/{a}", json={"timeline_frame": None})
    assert ok(off)["timeline_frame"] is None
    got = shot_at(alice, shot, off)
    assert [(i["generation_id"], i["timeline_frame"], i["position"]) for i in got["images"]] == [
        (b, 0, 0),
        (a, None, None),
    ]
    assert got["unpositioned_count"] == 1
    # Back on the timeline by a move.
    back = alice.patch(f"/api/shots/{shot}/generations/{a}", json={"timeline_frame": 60})
    assert [i["generation_id"] for i in shot_at(alice, shot, back)["images"]] == [b, a]
    # Refusals: a negative frame, no frame at all, a generation not in the shot.
    assert error_of(
        alice.patch(f"/api/shots/{shot}/generations/{a}", json={"timeline_frame": -1}), 422
    )
    assert error_of(alice.patch(f"/api/shots/{shot}/generations/{a}", json={}), 422)
    stranger = ok(
        alice.post("/api/generations", json={"project_id": project, "location": "/m/c.png"}), 201
    )["id"]
    assert (
        error_of(
            alice.patch(f"/api/shots/{shot}/generations/{stranger}", json={"timeline_frame": 5}),
            404,
        )["code"]
        == "not_found"
    )


def test_an_image_in_a_shot_twice_moves_by_its_membership_id(alice: httpx.Client) -> None:
    project = ok(alice.post("/api/projects", json={"name": "Twice"}), 201)["id"]
    shot = ok(alice.post("/api/shots", json={"project_id": project, "name": "S"}), 201)["id"]
    image = ok(
        alice.post(
            "/api/generations",
            json={"project_id": project, "location": "/m/a.png", "shot_id": shot},
        ),
        201,
    )["id"]
    second = ok(
        alice.post("/api/shots/shot_generations", json={"shot_id": shot, "generation_id": image}),
        201,
    )
    first_id = ok(alice.get(f"/api/shots/{shot}?min_position={second['position']}"))["images"][0][
        "shot_generation_id"
    ]
    second_id = second["shot_generation_id"]
    assert second["timeline_frame"] == 50
    moved = alice.patch(f"/api/shots/{shot}/memberships/{second_id}", json={"timeline_frame": 10})
    assert ok(moved)["shot_generation_id"] == second_id
    assert frames(shot_at(alice, shot, moved)) == [(first_id, 0), (second_id, 10)]
    # By generation id: the earliest appearance on the timeline (the first one, at 0).
    moved = alice.patch(f"/api/shots/{shot}/generations/{image}", json={"timeline_frame": 20})
    assert ok(moved)["shot_generation_id"] == first_id
    assert frames(shot_at(alice, shot, moved)) == [(second_id, 10), (first_id, 20)]
    # The membership id also works on the generations route (as DELETE does).
    off = alice.patch(f"/api/shots/{shot}/generations/{second_id}", json={"timeline_frame": None})
    assert frames(shot_at(alice, shot, off)) == [(first_id, 20), (second_id, None)]
    # The memberships route takes membership ids only.
    assert error_of(
        alice.patch(f"/api/shots/{shot}/memberships/{image}", json={"timeline_frame": 5}), 404
    )


def test_a_projects_shots_are_reordered_every_live_shot_exactly_once(alice: httpx.Client) -> None:
    project = ok(alice.post("/api/projects", json={"name": "Order"}), 201)["id"]
    a, b, c = (
        ok(alice.post("/api/shots", json={"project_id": project, "name": n}), 201)["id"]
        for n in "ABC"
    )

    def listed(response: httpx.Response) -> list[tuple[str, int]]:
        rows = ok(alice.get(f"/api/shots?projectId={project}&min_position={position(response)}"))
        return [(r["id"], r["position"]) for r in rows]

    done = alice.put(f"/api/projects/{project}/shots/order", json={"shot_ids": [c, a, b]})
    assert ok(done)["shot_ids"] == [c, a, b]
    assert listed(done) == [(c, 0), (a, 1), (b, 2)]
    # camelCase, and a new shot still goes last.
    done = alice.put(f"/api/projects/{project}/shots/order", json={"shotIds": [b, c, a]})
    assert listed(done) == [(b, 0), (c, 1), (a, 2)]
    d = ok(alice.post("/api/shots", json={"project_id": project, "name": "D"}), 201)["id"]
    answer = alice.put(f"/api/projects/{project}/shots/order", json={"shot_ids": [d, b, c, a]})
    assert listed(answer) == [(d, 0), (b, 1), (c, 2), (a, 3)]
    # Refusals (422, nothing written): one missing, one twice, one of another project.
    other = ok(alice.post("/api/projects", json={"name": "Other"}), 201)["id"]
    foreign = ok(alice.post("/api/shots", json={"project_id": other, "name": "F"}), 201)["id"]
    for wrong in (
        [d, b, c],
        [d, b, c, a, a],
        [d, b, c, a, foreign],
        [d, b, c, a, "00000000-0000-0000-0000-000000000000"],
    ):
        refused = error_of(
            alice.put(f"/api/projects/{project}/shots/order", json={"shot_ids": wrong}), 422
        )
        assert refused["code"] == "invalid_shot_order", refused
    assert error_of(
        alice.put(f"/api/projects/{project}/shots/order", json={"shot_ids": ["nope"]}), 422
    )
    # A deleted shot is left out (and may not be listed); a duplicate is a live shot.
    deleted = alice.delete(f"/api/shots/{c}")
    ok(deleted)
    assert error_of(
        alice.put(f"/api/projects/{project}/shots/order", json={"shot_ids": [d, b, c, a]}), 422
    )
    copy = ok(alice.post(f"/api/shots/{a}/duplicate"), 201)["id"]
    done = alice.put(f"/api/projects/{project}/shots/order", json={"shot_ids": [copy, a, b, d]})
    assert listed(done) == [(copy, 0), (a, 1), (b, 2), (d, 3)]
    # Restored, the deleted shot is a live shot again: the order must name it.
    ok(alice.post(f"/api/shots/{c}/restore"))
    assert error_of(
        alice.put(f"/api/projects/{project}/shots/order", json={"shot_ids": [copy, a, b, d]}), 422
    )

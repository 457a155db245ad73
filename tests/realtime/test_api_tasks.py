"""Task creation (families and catalogue types), reading, cancelling, rate limiting."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.realtime.api_harness import Server, error_of, ok, position, server

__all__ = ["server"]


@pytest.fixture(scope="module")
def alice(server: Server) -> httpx.Client:
    return server.user()


@pytest.fixture(scope="module")
def place(alice: httpx.Client) -> dict[str, str]:
    project = ok(alice.post("/api/projects", json={"name": "Square", "aspect_ratio": "1:1"}), 201)[
        "id"
    ]
    shot = ok(alice.post("/api/shots", json={"project_id": project, "name": "S"}), 201)["id"]
    images = [
        ok(
            alice.post(
                "/api/generations",
                json={"project_id": project, "location": f"/media/{i}.png", "shot_id": shot},
            ),
            201,
        )["id"]
        for i in range(3)
    ]
    return {"project": project, "shot": shot, "image": images[0], "images": images}


def create(
    client: httpx.Client, project: str, family: str, data: dict[str, Any], **kw: Any
) -> httpx.Response:
    return client.post(
        "/api/tasks", json={"family": family, "project_id": project, "input": data, **kw}
    )


def at(response: httpx.Response) -> str:
    return f"min_position={position(response)}"


FAMILY_INPUTS: dict[str, dict[str, Any]] = {
    "magic_edit": {"prompt": "make it blue", "image_url": "/media/0.png", "num_images": 2},
    "image_inpaint": {
        "prompt": "a hat",
        "image_url": "/m/0.png",
        "mask_url": "/m/mask.png",
        "create_as_generation": True,
    },
    "annotated_image_edit": {
        "prompt": "arrow",
        "image_url": "/m/0.png",
        "mask_url": "/m/ann.png",
        "create_as_generation": True,
    },
    "image_upscale": {"image_url": "/m/0.png", "scale_factor": 4},
    "character_animate": {"character_image_url": "/m/c.png", "motion_video_url": "/m/dance.mp4"},
    "individual_travel_segment": {
        "start_image_url": "/m/a.png",
        "end_image_url": "/m/b.png",
        "prompt": "walk",
        "num_frames": 33,
    },
    "join_clips": {"clip_urls": ["/m/1.mp4", "/m/2.mp4", "/m/3.mp4"], "prompts": ["fade"]},
    "travel_between_images": {
        "image_urls": ["/m/a.png", "/m/b.png", "/m/c.png"],
        "base_prompts": ["walk", "run"],
    },
    "edit_travel": {
        "image_url": "/m/0.png",
        "prompts": ["at night", "in snow"],
        "images_per_prompt": 2,
        "model": "flux",
    },
}


def test_image_generation_queues_prompts_times_images_with_the_projects_resolution(
    alice: httpx.Client, place: dict[str, str]
) -> None:
    made = create(
        alice,
        place["project"],
        "image_generation",
        {
            "prompts": [{"id": "1", "fullPrompt": "a cat"}, "a dog"],
            "images_per_prompt": 2,
            "seed": 7,
            "loras": [{"path": "/loras/x", "strength": 0.5}],
        },
    )
    body = ok(made, 201)
    assert len(body["task_ids"]) == 4 and body["status"] == "Queued"
    tasks = ok(alice.get(f"/api/tasks?projectId={place['project']}&{at(made)}"))
    mine = [t for t in tasks if t["id"] in body["task_ids"]]
    assert {t["status"] for t in mine} == {"Queued"} and len(mine) == 4
    assert {t["params_summary"]["resolution"] for t in mine} == {"670x670"}
    assert sorted(t["params_summary"]["prompt"] for t in mine) == [
        "a cat",
        "a cat",
        "a dog",
        "a dog",
    ]


@pytest.mark.parametrize("family", sorted(FAMILY_INPUTS))
def test_every_family_queues_from_its_input(
    alice: httpx.Client, place: dict[str, str], family: str
) -> None:
    data = dict(FAMILY_INPUTS[family])
    if family in ("magic_edit", "image_upscale"):
        data["based_on"] = place["image"]
    made = create(alice, place["project"], family, data)
    body = ok(made, 201)
    if family == "magic_edit":
        assert len(body["task_ids"]) == 2
    elif family == "edit_travel":
        tasks = [ok(alice.get(f"/api/tasks/{t}?{at(made)}")) for t in body["task_ids"]]
        assert {t["task_type"] for t in tasks} == {"edit_travel_flux"} and len(tasks) == 4
        assert sorted(t["params"]["prompt"] for t in tasks) == [
            "at night",
            "at night",
            "in snow",
            "in snow",
        ]
        assert {t["params"]["image_url"] for t in tasks} == {"/m/0.png"}
    else:
        task = ok(alice.get(f"/api/tasks/{body['task_id']}?{at(made)}"))
        assert task["project_id"] == place["project"]
    if family == "travel_between_images":
        assert len(body["segment_task_ids"]) == 2 and body["stitch_task_id"]
        assert task["task_type"] == "travel_orchestrator"


def test_structure_video_and_motion_params_get_the_seeds_defaults_and_reach_the_segments(
    alice: httpx.Client, place: dict[str, str]
) -> None:
    made = create(
        alice,
        place["project"],
        "travel_between_images",
        {
            "image_urls": ["/m/a.png", "/m/b.png", "/m/c.png"],
            "base_prompts": ["walk"],
            "structure_video_path": "/media/guide.mp4",
            "structure_video_type": "canny",
            "amount_of_motion": 0.2,
        },
    )
    body = ok(made, 201)
    expected = {
        "structure_video_path": "/media/guide.mp4",
        "structure_video_type": "canny",
        "structure_video_treatment": "adjust",
        "structure_video_motion_strength": 1.0,
        "amount_of_motion": 0.2,
        "motion_mode": "basic",
    }
    for task_id in (body["task_id"], *body["segment_task_ids"]):
        params = ok(alice.get(f"/api/tasks/{task_id}?{at(made)}"))["params"]
        assert {k: params.get(k) for k in expected} == expected
    single = create(
        alice,
        place["project"],
        "individual_travel_segment",
        {"start_image_url": "/m/a.png", "end_image_url": "/m/b.png"},
    )
    params = ok(alice.get(f"/api/tasks/{ok(single, 201)['task_id']}?{at(single)}"))["params"]
    assert (params["amount_of_motion"], params["motion_mode"]) == (0.5, "basic")
    assert not any(k.startswith("structure_video") for k in params)


@pytest.mark.parametrize(
    ("family", "data", "path"),
    [
        ("image_generation", {"prompts": []}, "body.input.prompts"),
        (
            "image_generation",
            {"prompts": ["x"], "images_per_prompt": 0},
            "body.input.images_per_prompt",
        ),
        ("magic_edit", {"image_url": "/m/a.png"}, "body.input.prompt"),
        ("image_inpaint", {"prompt": "p", "image_url": "/a", "mask_url": "/m"}, "body.input"),
        ("image_upscale", {"image_url": "/a", "scale_factor": 3}, "body.input.scale_factor"),
        ("travel_between_images", {"image_urls": ["/a"]}, "body.input.image_urls"),
        (
            "travel_between_images",
            {"image_urls": ["/a", "/b", "/c"], "base_prompts": ["a", "b", "c"]},
            "body.input",
        ),
        ("join_clips", {}, "body.input"),
        ("edit_travel", {"prompts": ["x"]}, "body.input.image_url"),
        (
            "individual_travel_segment",
            {"start_image_url": "/a", "end_image_url": "/b", "structure_video_type": "sobel"},
            "body.input.structure_video_type",
        ),
        (
            "travel_between_images",
            {
                "image_urls": ["/a", "/b"],
                "structure_video_path": "/g",
                "structure_video_motion_strength": 3,
            },
            "body.input.structure_video_motion_strength",
        ),
        (
            "travel_between_images",
            {"image_urls": ["/a", "/b"], "amount_of_motion": 1.5},
            "body.input.amount_of_motion",
        ),
        (
            "individual_travel_segment",
            {
                "start_image_url": "/a",
                "end_image_url": "/b",
                "structure_video_treatment": "stretch",
            },
            "body.input.structure_video_treatment",
        ),
        (
            "edit_travel",
            {"image_url": "/a", "prompts": ["x"], "model": "dalle"},
            "body.input.model",
        ),
    ],
)
def test_a_family_input_missing_what_it_needs_is_a_422_naming_the_field(
    alice: httpx.Client, place: dict[str, str], family: str, data: dict[str, Any], path: str
) -> None:
    body = error_of(create(alice, place["project"], family, data), 422)
    assert any(e["path"].startswith(path) for e in body["errors"]), body


def test_an_unknown_family_or_both_forms_at_once_are_refused(
    alice: httpx.Client, place: dict[str, str]
) -> None:
    error_of(create(alice, place["project"], "teleport", {}), 422)
    error_of(
        alice.post(
            "/api/tasks",
            json={
                "project_id": place["project"],
                "family": "image_upscale",
                "task_type": "image_upscale",
                "input": {},
            },
        ),
        422,
    )


def test_a_catalogue_type_is_queued_with_its_params_and_unknown_types_are_refused(
    alice: httpx.Client, place: dict[str, str]
) -> None:
    made = alice.post(
        "/api/tasks",
        json={
            "task_type": "image_upscale",
            "project_id": place["project"],
            "params": {"image_url": "/x"},
        },
    )
    body = ok(made, 201)
    assert body["status"] == "Queued" and body["task_id"]
    refused = error_of(
        alice.post(
            "/api/tasks",
            json={"task_type": "teleport", "project_id": place["project"], "params": {}},
        ),
        422,
    )
    assert refused["code"] == "unknown_task_type"


def test_the_seed_route_starts_a_travel_run_through_a_shots_images(
    alice: httpx.Client, place: dict[str, str]
) -> None:
    made = alice.post(
        "/api/steerable-motion/travel-between-images",
        json={"project_id": place["project"], "shot_id": place["shot"], "base_prompts": ["go"]},
    )
    body = ok(made, 201)
    assert len(body["segment_task_ids"]) == 2
    orchestrator = ok(alice.get(f"/api/tasks/{body['task_id']}?{at(made)}"))
    assert orchestrator["task_type"] == "travel_orchestrator"


def test_an_idempotency_key_returns_the_first_tasks_and_writes_nothing(
    alice: httpx.Client, place: dict[str, str]
) -> None:
    data = {"prompts": ["once"], "images_per_prompt": 2}
    first = ok(
        create(alice, place["project"], "image_generation", data, idempotency_key="k-1"), 201
    )
    head = ok(alice.get("/health"))["head_position"]
    again = ok(
        create(alice, place["project"], "image_generation", data, idempotency_key="k-1"), 201
    )
    assert again["task_ids"] == first["task_ids"]
    assert ok(alice.get("/health"))["head_position"] == head


def test_a_task_key_reused_with_another_body_is_refused_and_writes_nothing(
    alice: httpx.Client, place: dict[str, str]
) -> None:
    """The key makes the task id, so the task remembers what request made it."""
    first = ok(
        create(
            alice,
            place["project"],
            "image_generation",
            {"prompts": ["one"]},
            idempotency_key="k-bound",
        ),
        201,
    )
    head = ok(alice.get("/health"))["head_position"]
    refused = error_of(
        create(
            alice,
            place["project"],
            "image_generation",
            {"prompts": ["another"]},
            idempotency_key="k-bound",
        ),
        422,
    )
    assert refused["code"] == "idempotency_key_reused"
    assert ok(alice.get("/health"))["head_position"] == head
    again = ok(
        create(
            alice,
            place["project"],
            "image_generation",
            {"prompts": ["one"]},
            idempotency_key="k-bound",
        ),
        201,
    )
    assert again["task_ids"] == first["task_ids"]


def test_cancelling_a_task_and_cancelling_it_again(
    alice: httpx.Client, place: dict[str, str]
) -> None:
    task_id = ok(create(alice, place["project"], "image_upscale", {"image_url": "/x"}), 201)[
        "task_id"
    ]
    done = alice.patch(f"/api/tasks/{task_id}/cancel")
    ok(done)
    assert ok(alice.get(f"/api/tasks/{task_id}?{at(done)}"))["status"] == "Cancelled"
    body = error_of(alice.patch(f"/api/tasks/{task_id}/cancel"), 409)
    assert (body["current_status"], body["requested_status"], body["allowed_transitions"]) == (
        "Cancelled",
        "Cancelled",
        [],
    )


def test_cancel_pending_cancels_every_queued_task_of_the_project(
    server: Server, alice: httpx.Client
) -> None:
    project = ok(alice.post("/api/projects", json={"name": "Pending"}), 201)["id"]
    ok(create(alice, project, "image_generation", {"prompts": ["a", "b", "c"]}), 201)
    done = alice.post("/api/tasks/cancel-pending", json={"project_id": project})
    assert ok(done)["cancelled"] == 3
    assert ok(alice.get(f"/api/tasks?projectId={project}&status=Queued&{at(done)}")) == []
    assert len(ok(alice.get(f"/api/tasks?projectId={project}&status=Cancelled&{at(done)}"))) == 3


def test_task_creation_past_120_a_minute_is_rate_limited(server: Server) -> None:
    bob = server.user()
    project = ok(bob.post("/api/projects", json={"name": "Busy"}), 201)["id"]
    prompts = [f"p{i}" for i in range(20)]
    ok(create(bob, project, "image_generation", {"prompts": prompts, "images_per_prompt": 5}), 201)
    ok(create(bob, project, "image_generation", {"prompts": prompts}), 201)
    refused = create(bob, project, "image_upscale", {"image_url": "/x"})
    assert error_of(refused, 429)["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    other = server.user()
    mine = ok(other.post("/api/projects", json={"name": "Calm"}), 201)["id"]
    ok(create(other, mine, "image_upscale", {"image_url": "/x"}), 201)

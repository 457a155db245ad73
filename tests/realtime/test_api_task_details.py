"""Task details (seed 000 §3.3.2, the task details modal) and the task that made a
generation, through a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from darkroom.database import Database
from tests.realtime.api_harness import Server, error_of, ok, position, start_server, stop_server
from tests.realtime.test_api_workers import claim, user_with_credits, wid, worker_of


@pytest.fixture(scope="module")
def server(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(
        database, schema, tmp_path_factory.mktemp("details"), DARKROOM_WELCOME_CREDITS="0"
    )
    yield running
    stop_server(running)


LONG_PROMPT = "a fox in the snow, " * 30  # 570 characters: past the summary's 200


def test_a_tasks_details_hold_what_the_modal_shows(server: Server) -> None:
    alice, _ = user_with_credits(server)
    worker = worker_of(server, alice)
    project = ok(alice.post("/api/projects", json={"name": "Details"}), 201)["id"]
    params: dict[str, Any] = {
        "prompt": LONG_PROMPT,
        "negative_prompt": "blur",
        "seed": 7,
        "steps": 4,
        "resolution": "512x512",
        "guidance_scale": 3.5,
        "loras": [{"path": "a.safetensors", "strength": 0.8}],
        "extra": {"nested": [1, 2, 3]},
    }
    created = alice.post(
        "/api/tasks",
        json={"task_type": "image_generation", "project_id": project, "params": params},
    )
    task = ok(created, 201)["task_id"]
    queued = ok(alice.get(f"/api/tasks/{task}?min_position={position(created)}"))
    assert queued["status"] == "Queued" and queued["attempts"] == 0
    assert queued["timings"]["started_at"] is None and queued["worker_id"] is None
    assert queued["outputs"] == {"output_location": None, "thumbnail_url": None, "result_data": {}}
    # The full params (the summary stays, cut, for older clients).
    assert queued["params"]["prompt"] == LONG_PROMPT
    assert queued["params"]["extra"] == {"nested": [1, 2, 3]}
    assert len(queued["params_summary"]["prompt"]) <= 201

    assert ok(claim(worker))["task_id"] == task
    done = worker.post(
        f"/api/tasks/{task}/complete",
        json={
            "worker_id": wid(worker),
            "output_location": "/media/out.png",
            "thumbnail_url": "/media/out.thumb.png",
            "result_data": {"seed_used": 7, "frames": 1},
        },
    )
    made = ok(done)
    details = ok(alice.get(f"/api/tasks/{task}?min_position={position(done)}"))
    assert details["status"] == "Complete" and details["worker_id"] == wid(worker)
    assert details["outputs"] == {
        "output_location": "/media/out.png",
        "thumbnail_url": "/media/out.thumb.png",
        "result_data": {"seed_used": 7, "frames": 1},
    }
    timings = details["timings"]
    assert timings["created_at"] <= timings["started_at"] <= timings["processed_at"]
    assert timings["duration_s"] >= 0
    assert float(details["cost"]) > 0 and details["error_message"] is None
    # Backward compatible flat fields.
    assert details["output_location"] == "/media/out.png"
    assert details["processed_at"] == timings["processed_at"]

    # The task that made the generation.
    generation = made["generation_id"]
    by_generation = ok(
        alice.get(f"/api/generations/{generation}/task?min_position={position(done)}")
    )
    assert by_generation["id"] == task
    assert by_generation["params"]["prompt"] == LONG_PROMPT
    # An upload was made by no task: 404.
    upload = ok(
        alice.post("/api/generations", json={"project_id": project, "location": "/m/up.png"}), 201
    )["id"]
    assert error_of(alice.get(f"/api/generations/{upload}/task"), 404)["code"] == "not_found"
    # Another user: 404 for both.
    bob = server.user()
    assert error_of(bob.get(f"/api/tasks/{task}"), 404)
    assert error_of(bob.get(f"/api/generations/{generation}/task"), 404)


def test_a_failed_task_shows_its_error_and_attempts_and_a_variant_its_task(server: Server) -> None:
    alice, _ = user_with_credits(server)
    worker = worker_of(server, alice)
    project = ok(alice.post("/api/projects", json={"name": "Fails"}), 201)["id"]
    task = ok(
        alice.post(
            "/api/tasks",
            json={
                "task_type": "image_generation",
                "project_id": project,
                "params": {"prompt": "x"},
            },
        ),
        201,
    )["task_id"]
    assert ok(claim(worker))["task_id"] == task
    ok(
        worker.patch(
            f"/api/tasks/{task}/status",
            json={
                "status": "Queued",
                "worker_id": wid(worker),
                "error_message": "worker restarted",
            },
        )
    )
    assert ok(claim(worker))["task_id"] == task
    failed = worker.post(
        f"/api/tasks/{task}/fail",
        json={"worker_id": wid(worker), "error_message": "CUDA out of memory at step 3"},
    )
    ok(failed)
    details = ok(alice.get(f"/api/tasks/{task}?min_position={position(failed)}"))
    assert details["status"] == "Failed"
    assert details["error_message"] == "CUDA out of memory at step 3" == details["error"]
    assert details["attempts"] == 1 and details["timings"]["processed_at"] is not None

    # An upscale made a variant of an upload: the upload's task is the upscale.
    source = ok(
        alice.post(
            "/api/generations", json={"project_id": project, "location": "/media/small.png"}
        ),
        201,
    )
    upscale = ok(
        alice.post(
            "/api/tasks",
            json={
                "family": "image_upscale",
                "project_id": project,
                "input": {
                    "image_url": "/media/small.png",
                    "based_on": source["id"],
                    "is_primary": True,
                },
            },
        ),
        201,
    )["task_id"]
    assert ok(claim(worker))["task_id"] == upscale
    done = worker.post(f"/api/tasks/{upscale}/complete", json={"output_location": "/media/big.png"})
    ok(done)
    found = ok(alice.get(f"/api/generations/{source['id']}/task?min_position={position(done)}"))
    assert (found["id"], found["task_type"]) == (upscale, "image_upscale")
    assert found["outputs"]["output_location"] == "/media/big.png"

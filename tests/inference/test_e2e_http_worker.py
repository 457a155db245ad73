"""Acceptance, end to end: the reference pull worker against a real server process.

It claims over HTTP with a user's personal access token (a self-hosted worker),
runs the tiny pipelines without Ray, uploads its file and completes the task; the
picture shows in the user's gallery.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# The API tests' server harness (a real `darkroom serve` process per module), reused.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "realtime"))
from api_harness import Server, ok, start_server, stop_server

from darkroom.database import Database
from inference.frames import decode_image
from inference.worker_http import HttpWorker, WorkerConfig, stop_on_sigterm

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(database, schema, tmp_path_factory.mktemp("http-worker"))
    yield running
    stop_server(running)


def own_worker(server: Server, user: httpx.Client, backend) -> HttpWorker:
    token = ok(user.post("/api/tokens", json={"label": "my gpu"}), 201)["token"]
    # A worker id belongs to the credential that first uses it: one per test's user.
    config = WorkerConfig(
        worker_id=f"http-test-worker-{uuid.uuid4().hex[:8]}",
        run_types=("api", "gpu"),
        heartbeat_interval=0.5,
    )
    return HttpWorker(server.client(token), backend, config)


def run_until_handled(worker: HttpWorker, within: float = 20.0) -> tuple[str, str]:
    """The claim queue is a view, a moment behind the write: poll like a worker does."""
    deadline = time.monotonic() + within
    while not worker.run_once():
        assert time.monotonic() < deadline, "nothing claimed"
        time.sleep(0.05)
    return worker.handled[-1]


def test_the_reference_worker_claims_runs_uploads_and_completes_over_http(
    server: Server, backend
) -> None:
    user = server.user()
    project = ok(user.post("/api/projects", json={"name": "Film"}), 201)["id"]
    task = ok(
        user.post(
            "/api/tasks",
            json={
                "task_type": "image_generation",
                "project_id": project,
                "params": {"prompt": "a fox", "resolution": "64x48", "seed": 3},
            },
        ),
        201,
    )["task_id"]
    worker = own_worker(server, user, backend)
    assert run_until_handled(worker) == (task, "complete")
    seen = f"min_position={worker.last_position}"
    done = ok(user.get(f"/api/tasks/{task}?{seen}"))
    assert done["status"] == "Complete"
    assert done["output_location"].startswith("/media/uploads/")
    gallery = ok(user.get(f"/api/generations?projectId={project}&{seen}"))["items"]
    assert [g["location"] for g in gallery] == [done["output_location"]]
    picture = user.get(done["output_location"])
    assert picture.status_code == 200
    assert decode_image(picture.content).size == (64, 48)
    # Its heartbeats said what it was doing (GET /api/workers, service key).
    [listed] = [
        w
        for w in ok(server.service().get("/api/workers"))
        if w["worker_id"] == worker.config.worker_id
    ]
    assert (listed["status"], listed["current_model"]) == ("busy", "text_to_image")


def test_an_upscale_through_the_reference_worker_reads_its_input_from_the_server(
    server: Server, backend
) -> None:
    user = server.user()
    project = ok(user.post("/api/projects", json={"name": "Film"}), 201)["id"]
    from PIL import Image

    from inference.frames import encode_png

    upload = ok(
        user.post(
            "/api/uploads",
            files={
                "file": (
                    "small.png",
                    encode_png(Image.new("RGB", (16, 12), (9, 99, 199))),
                    "image/png",
                )
            },
        ),
        201,
    )
    made = user.post(
        "/api/generations", json={"project_id": project, "location": upload["location"]}
    )
    generation = ok(made, 201)["generation_id"]
    task = ok(
        user.post(
            "/api/tasks",
            json={
                "task_type": "image_upscale",
                "project_id": project,
                "params": {
                    "image_url": upload["location"],
                    "based_on": generation,
                    "scale_factor": 4,
                    "is_primary": True,
                },
            },
        ),
        201,
    )["task_id"]
    worker = own_worker(server, user, backend)
    assert run_until_handled(worker) == (task, "complete")
    shown = ok(user.get(f"/api/generations/{generation}?min_position={worker.last_position}"))
    assert shown["location"] != upload["location"]
    assert decode_image(user.get(shown["location"]).content).size == (64, 48)


class Interrupted:
    """A backend its operator stops with Ctrl-C halfway through a run."""

    def run(self, *_args: object) -> None:
        raise KeyboardInterrupt


def test_a_worker_stopped_with_ctrl_c_hands_its_task_back_without_spending_an_attempt(
    server: Server,
) -> None:
    user = server.user()
    project = ok(user.post("/api/projects", json={"name": "Film"}), 201)["id"]
    task = ok(
        user.post(
            "/api/tasks",
            json={
                "task_type": "image_generation",
                "project_id": project,
                "params": {"prompt": "a fox", "resolution": "64x48"},
            },
        ),
        201,
    )["task_id"]
    worker = own_worker(server, user, Interrupted())
    with pytest.raises(KeyboardInterrupt):
        run_until_handled(worker)
    assert worker.last_position is not None  # the release was written
    back = ok(user.get(f"/api/tasks/{task}?min_position={worker.last_position}"))
    assert (back["status"], back["attempts"]) == ("Queued", 0)


def test_sigterm_stops_the_worker_the_way_ctrl_c_does() -> None:
    before = signal.getsignal(signal.SIGTERM)
    try:
        stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode boundary
    finally:
        signal.signal(signal.SIGTERM, before)

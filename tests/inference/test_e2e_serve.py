"""Acceptance, end to end: `darkroom serve`'s app with local inference (its own Ray, the
dispatcher, the projections) takes a task over HTTP to a picture in the gallery, and
stops on SIGTERM through uvicorn's own shutdown (Ray's crash handler does not take it)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# The API tests' server harness (a real server process per module), reused.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "realtime"))
import api_harness
from api_harness import Server, ok, position, start_server, stop_server

from darkroom.database import Database
from inference.frames import decode_image

pytestmark = pytest.mark.timeout(240)

LAUNCH = (
    "import sys, uvicorn\n"
    "from darkroom import redact\n"
    "redact.install()\n"  # as `darkroom serve`: no credential in any log line
    "from darkroom.settings import Settings\n"
    "from darkroom.dispatch import build_serving_app\n"
    "uvicorn.run(build_serving_app(Settings()), host='127.0.0.1', port=int(sys.argv[1]),"
    " log_level='info')\n"
)


@pytest.fixture(scope="module")
def served(
    database: Database,
    schema: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[Server]:
    monkeypatch_module.setattr(api_harness, "LAUNCH", LAUNCH)
    running = start_server(
        database,
        schema,
        tmp_path_factory.mktemp("serve"),
        DARKROOM_ACTORS="text_to_image+image_to_image:1",
        DARKROOM_RAY_NUM_CPUS="2",
        DARKROOM_RAY_OBJECT_STORE_MB="128",
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_serve_runs_a_task_to_a_gallery_picture_with_its_own_ray_and_stops_cleanly(
    served: Server,
) -> None:
    user = served.user()
    project = ok(user.post("/api/projects", json={"name": "Film"}), 201)["id"]
    created = user.post(
        "/api/tasks",
        json={
            "task_type": "image_generation",
            "project_id": project,
            "params": {"prompt": "a fox", "resolution": "64x48"},
        },
    )
    task = ok(created, 201)["task_id"]
    seen = f"min_position={position(created)}"  # the board is a view: read our own write
    deadline = time.monotonic() + 150  # the actor loads its model first
    while (row := ok(user.get(f"/api/tasks/{task}?{seen}")))["status"] != "Complete":
        assert row["status"] in ("Queued", "In Progress"), row
        assert time.monotonic() < deadline, row
        time.sleep(0.2)
    gallery = ok(
        user.get(f"/api/generations?projectId={project}&min_position={row['log_position']}")
    )["items"]
    assert [g["location"] for g in gallery] == [row["output_location"]]
    assert decode_image(user.get(row["output_location"]).content).size == (64, 48)
    stop_server(served)
    # uvicorn re-raises the SIGTERM it handled once its lifespan (and Ray) stopped.
    assert served.process.returncode in (0, -15)

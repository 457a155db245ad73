"""Acceptance (issue 14): adding a task family is one family module and one backend
handler. The fixture registers `poster_family.POSTER` and one handler for its task
type, nothing else; then a real HTTP request creates the family's tasks, the
reference worker runs them on the tiny text-to-image pipeline, and the posters land in
the gallery. The server runs in this process (uvicorn in a thread, `darkroom serve`'s
app) so it sees the registration; both registrations are taken back afterwards.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "realtime"))
from api_harness import Server, free_port, ok, server_env
from poster_family import POSTER

from darkroom import redact
from darkroom.database import Database
from domain import families
from domain.catalogue import DEFAULT_CATALOGUE
from inference.frames import decode_image
from inference.handlers.core import DiffusersBackend
from inference.handlers.generation import text_to_image
from inference.handlers.registry import HANDLERS, register_handler, unregister_handler
from inference.handlers.results import Job, Result
from inference.models import TASK_MODELS, TEXT_TO_IMAGE
from inference.worker_http import HttpWorker, WorkerConfig

pytestmark = pytest.mark.timeout(180)


def poster(backend: DiffusersBackend, job: Job) -> Result:
    """The family's one backend handler: its headline printed by text-to-image."""
    params = job.params
    prompt = {"prompt": params["headline"], "resolution": params["size"], "seed": params["seed"]}
    return text_to_image(backend, replace(job, params=prompt))


@pytest.fixture(scope="module")
def poster_family() -> Iterator[families.Family]:
    with families.registered(POSTER):
        register_handler("poster", poster)
        try:
            yield POSTER
        finally:
            unregister_handler("poster")
    assert "poster" not in families.FAMILIES and "poster" not in DEFAULT_CATALOGUE
    assert "poster" not in TASK_MODELS and "poster" not in HANDLERS


@pytest.fixture(scope="module")
def server(
    poster_family: families.Family,
    database: Database,
    schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    from darkroom.settings import Settings
    from darkroom.wiring import build_app

    data_dir = tmp_path_factory.mktemp("new-family")
    with pytest.MonkeyPatch.context() as env:
        for name, value in server_env(database, schema, data_dir).items():
            env.setenv(name, value)
        redact.install()  # as `darkroom serve`
        port = free_port()
        serving = uvicorn.Server(
            uvicorn.Config(build_app(Settings()), host="127.0.0.1", port=port, log_level="info")
        )
        thread = threading.Thread(target=serving.run, name="new-family-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not serving.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        running = Server(f"http://127.0.0.1:{port}", data_dir, None)  # type: ignore[arg-type]
        yield running
        for client in running.clients:
            client.close()
        serving.should_exit = True
        thread.join(timeout=30)


def run_all(worker: HttpWorker, count: int, within: float = 60.0) -> list[tuple[str, str]]:
    """The claim queue is a view, a moment behind the write: poll like a worker does."""
    deadline = time.monotonic() + within
    while len(worker.handled) < count:
        assert time.monotonic() < deadline, f"handled {worker.handled} of {count}"
        if not worker.run_once():
            time.sleep(0.05)
    return worker.handled


def test_a_family_added_in_one_module_and_one_handler_runs_from_http_to_the_gallery(
    server: Server, backend: DiffusersBackend
) -> None:
    user = server.user()
    project = ok(user.post("/api/projects", json={"name": "Posters"}), 201)["id"]

    # The derived tables and the API's document know the family without being told.
    assert TASK_MODELS["poster"] == TEXT_TO_IMAGE
    assert DEFAULT_CATALOGUE["poster"].pipeline == TEXT_TO_IMAGE
    document = ok(user.get("/openapi.json"))
    assert (
        "poster"
        in document["components"]["schemas"]["TaskCreate"]["properties"]["family"]["anyOf"][0][
            "enum"
        ]
    )

    created = user.post(
        "/api/tasks",
        json={
            "family": "poster",
            "project_id": project,
            "input": {"headline": "A fox", "size": "40x32", "copies": 2, "seed": 7},
        },
    )
    task_ids = ok(created, 201)["task_ids"]
    assert len(task_ids) == 2

    token = ok(user.post("/api/tokens", json={"label": "poster press"}), 201)["token"]
    config = WorkerConfig(
        worker_id=f"poster-worker-{project[:8]}", run_types=("api", "gpu"), heartbeat_interval=0.5
    )
    worker = HttpWorker(server.client(token), backend, config)
    assert sorted(run_all(worker, 2)) == sorted((task, "complete") for task in task_ids)

    seen = f"min_position={worker.last_position}"
    details = [ok(user.get(f"/api/tasks/{task}?{seen}")) for task in task_ids]
    assert [d["status"] for d in details] == ["Complete", "Complete"]
    assert [d["params"]["seed"] for d in details] == [7, 8]
    assert {d["params"]["headline"] for d in details} == {"A fox"}
    gallery = ok(user.get(f"/api/generations?projectId={project}&{seen}"))["items"]
    assert sorted(g["location"] for g in gallery) == sorted(d["output_location"] for d in details)
    for generation in gallery:
        picture = user.get(generation["location"])
        assert picture.status_code == 200
        assert decode_image(picture.content).size == (40, 32)


def test_the_familys_input_is_checked_at_the_edge_by_a_model_made_from_its_domain_input(
    server: Server,
) -> None:
    user = server.user()
    project = ok(user.post("/api/projects", json={"name": "Posters"}), 201)["id"]
    refused = user.post(
        "/api/tasks",
        json={"family": "poster", "project_id": project, "input": {"copies": "many"}},
    )
    assert refused.status_code == 422, refused.text
    paths = {e["path"] for e in refused.json()["errors"]}
    assert {"body.input.headline", "body.input.copies"} <= paths
    # The family's own rule (its domain input's check) answers 422 too, nothing queued.
    too_many = user.post(
        "/api/tasks",
        json={"family": "poster", "project_id": project, "input": {"headline": "x", "copies": 9}},
    )
    assert too_many.status_code == 422, too_many.text
    assert "copies must be 1 to 4 (got 9)" in too_many.json()["message"]
    assert ok(user.get(f"/api/tasks?projectId={project}")) == []


def test_a_family_nobody_registered_is_refused_naming_the_registered_ones(server: Server) -> None:
    user = server.user()
    project = ok(user.post("/api/projects", json={"name": "Posters"}), 201)["id"]
    refused = user.post(
        "/api/tasks", json={"family": "billboard", "project_id": project, "input": {}}
    )
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert (error["path"], error["type"]) == ("body.family", "literal_error")
    assert "'poster'" in error["message"] and "'image_generation'" in error["message"]

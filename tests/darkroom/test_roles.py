"""`darkroom serve --role ...`: an API process and a projections process answer as one
process does, a process without the projections role holds no view's lock, a hub
process of its own streams what the others wrote and folded, and a dispatcher process
of its own, joining an existing Ray cluster by Ray Client (`RAY_ADDRESS=ray://...`, as
deploy/ runs it; tiny models built in code), runs a task queued through the API
process to a picture the API serves.

Real `darkroom serve` processes on one PostgreSQL (inference off but in the dispatcher):
the split processes on the module's schema, the single process on a schema of its own;
the same small flow through both, its answers compared once ids and times are set aside.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.sync.client import connect

from darkroom.database import Database, create_schema, drop_schema
from darkroom.errors import UnknownRoleError
from darkroom.roles import ALL_ROLES, parse_roles
from projections import all_views
from projections import db as views_db
from projections.db import lock_key

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import history_http

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(400)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def view_locks_held(db: Database, schema: str) -> set[str]:
    """The views whose advisory lock (`Runner.acquire`) some session of the schema holds."""
    keys = {lock_key(f"view:{view.name}", schema): view.name for view in all_views()}
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
        ).fetchall()
    return {keys[key] for (key,) in rows if key in keys}


USER = "roles-alice"


def early_write(base: str) -> int:
    """One project of another user, written first (by both setups, so their logs match)."""
    answer = httpx.post(
        f"{base}/api/projects",
        json={"name": "Early"},
        timeout=60,
        headers={"Authorization": f"Bearer {history_http.token('roles-bob')}"},
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["position"])


def view_positions(db: Database, schema: str) -> dict[str, int]:
    with views_db.connect(db.conninfo, schema) as conn:
        return views_db.active_positions(conn)


def flow(base: str) -> tuple[str, list[Any]]:
    """A small session of one user: writes, then the reads that show them; returns the
    project and the reads' (path, status, body)."""
    with httpx.Client(
        base_url=base, timeout=60, headers={"Authorization": f"Bearer {history_http.token(USER)}"}
    ) as client:

        def write(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            answer = client.request(method, path, json=body)
            assert answer.status_code in (200, 201), (path, answer.text)
            return dict(answer.json())

        project = write("POST", "/api/projects", {"name": "Roles"})["id"]
        first = write(
            "POST", "/api/generations", {"project_id": project, "location": "/media/one.png"}
        )["id"]
        write("POST", "/api/generations", {"project_id": project, "location": "/media/two.png"})
        write("PATCH", f"/api/generations/{first}", {"starred": True})
        shot = write("POST", "/api/shots", {"project_id": project, "name": "Opening"})["id"]
        write("POST", "/api/shots/shot_generations", {"shot_id": shot, "generation_id": first})
        last = write(
            "POST",
            "/api/tasks",
            {
                "family": "image_upscale",
                "project_id": project,
                "input": {"image_url": "/media/one.png"},
            },
        )
        at = f"min_position={last['position']}"
        reads = [
            f"/api/projects/{project}?{at}",
            f"/api/generations?projectId={project}&{at}",
            f"/api/generations/{first}?{at}",
            f"/api/shots?projectId={project}&{at}",
            f"/api/shots/{shot}?{at}",
            f"/api/tasks?projectId={project}&{at}",
            f"/api/credits?{at}",
        ]
        answers = [(path.split("?")[0], client.get(path)) for path in reads]
    return project, [(path, answer.status_code, answer.json()) for path, answer in answers]


@contextlib.contextmanager
def ray_head() -> Iterator[str]:
    """`ray start --head --block` on 127.0.0.1 (free ports, no dashboard), the project on
    its path as an installed image has it; yields its Ray Client address, stops it by pid."""
    ports = [history_http.free_port() for _ in range(3)]
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    with open(Path(folder) / "head.log", "wb") as log:
        head = subprocess.Popen(
            [
                ray,
                "start",
                "--head",
                "--block",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(ports[0]),
                "--ray-client-server-port",
                str(ports[1]),
                "--dashboard-agent-listen-port",
                str(ports[2]),
                "--include-dashboard",
                "false",
                "--num-cpus",
                "2",
                "--temp-dir",
                folder,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", ports[1])) == 0:
                    break
            assert head.poll() is None and time.monotonic() < deadline, (
                Path(folder) / "head.log"
            ).read_text()[-2000:]
            time.sleep(0.5)
        yield f"ray://127.0.0.1:{ports[1]}"
    finally:
        head.terminate()  # --block: ray stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(folder, ignore_errors=True)


def task_run(api: str) -> dict[str, Any]:
    """A text-to-image task queued through `api`, followed until it is no longer pending."""
    headers = {"Authorization": f"Bearer {history_http.token(USER)}"}
    with httpx.Client(base_url=api, timeout=60, headers=headers) as client:
        project = client.post("/api/projects", json={"name": "Rendered"}).json()["id"]
        created = client.post(
            "/api/tasks",
            json={
                "task_type": "image_generation",
                "project_id": project,
                "params": {"prompt": "a fox", "resolution": "64x48"},
            },
        ).json()
        deadline = time.monotonic() + 180  # Ray starts, the actor builds its tiny model
        while True:
            row = client.get(
                f"/api/tasks/{created['task_id']}?min_position={created['position']}"
            ).json()
            if row["status"] not in ("Queued", "In Progress") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        picture = client.get(row["output_location"]).content if row.get("output_location") else b""
    return {"row": row, "picture": picture}


def hub_streams(hub: str, api: str, project: str) -> dict[str, Any]:
    """Subscribes to the project on `hub`, then writes through `api`: the frames seen."""

    def frame(ws: Any, wanted: str) -> dict[str, Any]:
        while (got := json.loads(ws.recv(timeout=30)))["type"] != wanted:
            assert got["type"] in ("ping", "change", "pong"), got
        return dict(got)

    with connect(hub.replace("http://", "ws://") + "/ws", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "auth", "token": history_http.token(USER)}))
        ready = frame(ws, "ready")
        ws.send(json.dumps({"type": "subscribe", "topic": f"project:{project}", "ref": "p"}))
        subscribed = frame(ws, "subscribed")
        written = httpx.post(
            f"{api}/api/generations",
            timeout=60,
            json={"project_id": project, "location": "/media/three.png"},
            headers={"Authorization": f"Bearer {history_http.token(USER)}"},
        ).json()
        changes = [frame(ws, "change")]
        while changes[-1]["position"] < written["position"]:
            changes.append(frame(ws, "change"))
    return {
        "ready": ready,
        "snapshot": subscribed["snapshot"],
        "written": written,
        "changes": changes,
        "topic": f"project:{project}",
    }


def without_ids_and_times(value: Any) -> str:
    """The answers as text, each id replaced by its order of first appearance."""
    text = MOMENT.sub("<time>", repr(value))
    seen: dict[str, str] = {}
    return UUID.sub(lambda m: seen.setdefault(m.group(0), f"<id{len(seen)}>"), text)


@pytest.fixture(scope="module")
def split(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """`--role api` started first and alone, then `--role projections` and `--role hub`."""
    data = tmp_path_factory.mktemp("split")

    def serve(stack: contextlib.ExitStack, name: str, **env: str) -> history_http.Served:
        served = history_http.start_serve(database, schema, data, name, **env)
        stack.callback(served.stop)
        return served

    with contextlib.ExitStack() as stack:
        api = serve(stack, "api", DARKROOM_ROLES="api")
        result: dict[str, Any] = {
            "locks_with_api_alone": view_locks_held(database, schema),
            "early_position": early_write(api.base),
        }
        time.sleep(1.5)  # a runner in this process would fold it within ~0.1 s
        result["views_with_api_alone"] = view_positions(database, schema)
        projections = serve(stack, "projections", DARKROOM_ROLES="projections")
        hub = serve(stack, "hub", DARKROOM_ROLES="hub")
        deadline = time.monotonic() + 60
        while (held := view_locks_held(database, schema)) != _names():
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        result["locks_with_projections"] = held
        project, result["answers"] = flow(api.base)
        result["hub"] = hub_streams(hub.base, api.base, project)
        result["api_on_projections"] = httpx.get(f"{projections.base}/api/projects").status_code
        result["api_on_hub"] = httpx.get(f"{hub.base}/openapi.json").status_code
        result["health_on_projections"] = httpx.get(f"{projections.base}/health").status_code
        with ray_head() as address, contextlib.ExitStack() as ray_stack:
            dispatcher = serve(
                ray_stack,
                "dispatcher",
                DARKROOM_ROLES="dispatcher",
                DARKROOM_INFERENCE="ray",
                RAY_ADDRESS=address,
                DARKROOM_ACTORS="text_to_image+image_to_image:1",
            )
            result["task"] = task_run(api.base)
        result["errors_logged"] = [
            line
            for served in (api, projections, hub, dispatcher)
            for line in served.errors_logged()
        ]
        yield result


def _names() -> set[str]:
    return {view.name for view in all_views()}


@pytest.fixture(scope="module")
def single(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    """Every role in one process (the default), on a schema of its own."""
    own = f"t_roles_single_{uuid.uuid4().hex[:6]}"
    create_schema(database, own)
    served = history_http.start_serve(database, own, tmp_path_factory.mktemp("one"), "one")
    try:
        early_write(served.base)
        yield flow(served.base)[1]
    finally:
        served.stop()
        drop_schema(database, own)


def test_roles_are_read_from_a_comma_separated_list() -> None:
    assert parse_roles("api, hub") == {"api", "hub"}
    assert parse_roles(",".join(ALL_ROLES)) == set(ALL_ROLES)


def test_an_unknown_role_is_refused_by_name() -> None:
    with pytest.raises(UnknownRoleError, match="'projection'"):
        parse_roles("api,projection")
    with pytest.raises(UnknownRoleError, match="no role"):
        parse_roles(" , ")


def test_serve_refuses_an_unknown_role_by_name_before_it_starts() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "darkroom", "serve", "--role", "api,projection"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DARKROOM_ROLES": "api"},
    )
    assert answer.returncode == 2
    assert "unknown role 'projection'" in answer.stderr


def test_an_api_process_without_projections_holds_no_view_lock(split: dict[str, Any]) -> None:
    assert split["locks_with_api_alone"] == set()


def test_an_api_process_without_projections_folds_nothing(split: dict[str, Any]) -> None:
    assert split["early_position"] > 0
    assert set(split["views_with_api_alone"]) == _names()
    assert set(split["views_with_api_alone"].values()) == {0}


def test_the_projections_process_holds_every_view_lock(split: dict[str, Any]) -> None:
    assert split["locks_with_projections"] == _names()


def test_an_api_and_a_projections_process_answer_as_one_process_does(
    split: dict[str, Any], single: list[Any]
) -> None:
    assert [status for _, status, _ in split["answers"]] == [200] * len(single)
    assert without_ids_and_times(split["answers"]) == without_ids_and_times(single)


def test_a_process_without_the_api_role_answers_404_for_the_api_and_200_for_health(
    split: dict[str, Any],
) -> None:
    assert split["api_on_projections"] == 404
    assert split["api_on_hub"] == 404
    assert split["health_on_projections"] == 200


def test_a_hub_process_streams_what_the_api_process_wrote_and_the_projections_folded(
    split: dict[str, Any],
) -> None:
    hub = split["hub"]
    assert hub["snapshot"]["project"]["name"] == "Roles"
    assert len(hub["snapshot"]["generations"]) == 2
    *_, last = hub["changes"]
    assert {change["topic"] for change in hub["changes"]} == {hub["topic"]}
    assert last["position"] == hub["written"]["position"]
    assert hub["written"]["id"] in json.dumps(last["data"])


def test_a_dispatcher_process_on_an_existing_ray_cluster_runs_a_task_queued_through_the_api(
    split: dict[str, Any],
) -> None:
    from inference.frames import decode_image

    row = split["task"]["row"]
    assert row["status"] == "Complete", row
    assert decode_image(split["task"]["picture"]).size == (64, 48)


def test_no_process_logged_an_error(split: dict[str, Any]) -> None:
    assert split["errors_logged"] == []

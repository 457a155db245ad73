"""`darkroom serve --role ...`: an API process and a projections process answer as one
process does, and a process without the projections role holds no view's lock.

Real `darkroom serve` processes (`DARKROOM_INFERENCE=off`) on one PostgreSQL: the split
pair on the module's schema, the single process on a schema of its own; the same small
flow through both, its answers compared once ids and times are set aside.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from darkroom.database import Database, create_schema, drop_schema
from darkroom.errors import UnknownRoleError
from darkroom.roles import ALL_ROLES, parse_roles
from projections import all_views
from projections.db import lock_key

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import history_http

pytestmark = pytest.mark.timeout(400)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def view_locks_held(db: Database, schema: str) -> set[str]:
    """The views whose advisory lock (`Runner.acquire`) some session of the schema holds."""
    keys = {lock_key(f"view:{view.name}", schema): view.name for view in all_views()}
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        rows = conn.execute("SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
                            "WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
                            ).fetchall()
    return {keys[key] for (key,) in rows if key in keys}


def flow(base: str) -> list[Any]:
    """A small session of one user: writes, then the reads that show them."""
    user = "roles-alice"
    with httpx.Client(base_url=base, timeout=60, headers={
            "Authorization": f"Bearer {history_http.token(user)}"}) as client:
        def write(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            answer = client.request(method, path, json=body)
            assert answer.status_code in (200, 201), (path, answer.text)
            return dict(answer.json())

        project = write("POST", "/api/projects", {"name": "Roles"})["id"]
        first = write("POST", "/api/generations", {"project_id": project,
                                                   "location": "/media/one.png"})["id"]
        write("POST", "/api/generations", {"project_id": project, "location": "/media/two.png"})
        write("PATCH", f"/api/generations/{first}", {"starred": True})
        shot = write("POST", "/api/shots", {"project_id": project, "name": "Opening"})["id"]
        write("POST", "/api/shots/shot_generations", {"shot_id": shot, "generation_id": first})
        last = write("POST", "/api/tasks", {"family": "image_upscale", "project_id": project,
                                            "input": {"image_url": "/media/one.png"}})
        at = f"min_position={last['position']}"
        reads = [f"/api/projects/{project}?{at}", f"/api/generations?projectId={project}&{at}",
                 f"/api/generations/{first}?{at}", f"/api/shots?projectId={project}&{at}",
                 f"/api/shots/{shot}?{at}", f"/api/tasks?projectId={project}&{at}",
                 f"/api/credits?{at}"]
        answers = [(path.split("?")[0], client.get(path)) for path in reads]
    return [(path, answer.status_code, answer.json()) for path, answer in answers]


def without_ids_and_times(value: Any) -> str:
    """The answers as text, each id replaced by its order of first appearance."""
    text = MOMENT.sub("<time>", repr(value))
    seen: dict[str, str] = {}
    return UUID.sub(lambda m: seen.setdefault(m.group(0), f"<id{len(seen)}>"), text)


@pytest.fixture(scope="module")
def split(database: Database, schema: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`--role api` started first and alone, then `--role projections` beside it."""
    data = tmp_path_factory.mktemp("split")
    api = history_http.start_serve(database, schema, data, "api", DARKROOM_ROLES="api")
    result: dict[str, Any] = {"locks_with_api_alone": view_locks_held(database, schema)}
    projections = history_http.start_serve(database, schema, data, "projections",
                                           DARKROOM_ROLES="projections")
    try:
        deadline = time.monotonic() + 60
        while (held := view_locks_held(database, schema)) != _names():
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        result["locks_with_projections"] = held
        result["answers"] = flow(api.base)
        result["api_on_projections"] = httpx.get(f"{projections.base}/api/projects").status_code
        result["health_on_projections"] = httpx.get(f"{projections.base}/health").status_code
        result["errors_logged"] = api.errors_logged() + projections.errors_logged()
        yield result
    finally:
        projections.stop()
        api.stop()


def _names() -> set[str]:
    return {view.name for view in all_views()}


@pytest.fixture(scope="module")
def single(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    """Every role in one process (the default), on a schema of its own."""
    own = f"t_roles_single_{uuid.uuid4().hex[:6]}"
    create_schema(database, own)
    served = history_http.start_serve(database, own, tmp_path_factory.mktemp("one"), "one")
    try:
        yield flow(served.base)
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


def test_an_api_process_without_projections_holds_no_view_lock(split: dict[str, Any]) -> None:
    assert split["locks_with_api_alone"] == set()


def test_the_projections_process_holds_every_view_lock(split: dict[str, Any]) -> None:
    assert split["locks_with_projections"] == _names()


def test_an_api_and_a_projections_process_answer_as_one_process_does(
        split: dict[str, Any], single: list[Any]) -> None:
    assert [status for _, status, _ in split["answers"]] == [200] * len(single)
    assert without_ids_and_times(split["answers"]) == without_ids_and_times(single)


def test_a_process_without_the_api_role_answers_404_for_the_api_and_200_for_health(
        split: dict[str, Any]) -> None:
    assert split["api_on_projections"] == 404
    assert split["health_on_projections"] == 200


def test_neither_process_logged_an_error(split: dict[str, Any]) -> None:
    assert split["errors_logged"] == []

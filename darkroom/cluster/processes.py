"""The processes of a local cluster: started detached, known by pid and start time.

A member is started in a session of its own (`start_new_session`), so it outlives the
`darkroom cluster up` that started it and a Ctrl-C in that terminal reaches none of
them. A pid is only ever trusted together with the start time recorded beside it: a
pid the system has since given to another program counts as dead and is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import psutil

from darkroom.cluster.errors import ClusterStartError, MemberExitedError

# Popen objects of the children this process started: polled so they never linger as
# zombies (a zombie's pid still exists; `alive` treats it as dead).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A free port on 127.0.0.1 that this process has not handed out before: the system
    can offer the same free port twice while nothing binds it yet (seen: a Ray node's
    node-manager and runtime-env-agent ports equal, and `ray start` refusing them)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def bound(port: int) -> bool:
    """Some process listens on `port`, on any address (Ray's runtime-env agent binds the
    machine's address, not the node's 127.0.0.1)."""
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        for c in psutil.net_connections(kind="tcp")
    )


def spawn(command: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path) -> int:
    """Start `command` detached, its output appended to `log`; returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    return process.pid


def start_time(pid: int | None) -> float | None:
    """When `pid` started, or None when no live process (zombies are dead) has it."""
    if not pid:
        return None
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.Error:
        return None


def alive(pid: int | None, started: float | None) -> bool:
    """The process `pid` that started at `started` still runs."""
    now = start_time(pid)
    return now is not None and (started is None or abs(now - started) < 1.0)


def descendants(pid: int | None) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True)) if pid else []
    except psutil.Error:
        return []


def signal_all(processes: Iterable[psutil.Process], sig: int) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)


def kill(pid: int | None, started: float | None) -> None:
    """SIGKILL `pid` (when it is still the process recorded) and wait until it is gone."""
    if not alive(pid, started):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone([pid], 10.0)


def stop(pid: int | None, started: float | None, grace: float = 30.0) -> None:
    """SIGTERM `pid` and every process under it; SIGKILL what is left after `grace`."""
    if not alive(pid, started):
        return
    family = [psutil.Process(pid), *descendants(pid)] if pid else []
    signal_all(family[:1], signal.SIGTERM)
    if not wait_gone([p.pid for p in family[:1]], grace):
        signal_all(family[:1], signal.SIGKILL)
    left = [p for p in family if running(p)]
    if left and not wait_gone([p.pid for p in left], 5.0):
        signal_all(left, signal.SIGKILL)
        wait_gone([p.pid for p in left], 5.0)


def running(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(pids: Iterable[int], timeout: float) -> bool:
    """True once none of `pids` runs (reaping our own children), False at the deadline."""
    waiting = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        waiting = [pid for pid in waiting if start_time(pid) is not None]
        if not waiting:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def mentioning(folder: Path) -> list[psutil.Process]:
    """Live processes whose command line names `folder` or a path in it (a cluster's
    private folder, or one Ray node's)."""
    path = str(folder)

    def names(part: str) -> bool:
        return part == path or f"{path}/" in part or part.endswith(f"={path}")

    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(names(part) for part in process.info["cmdline"] or ()) and running(process):
                found.append(process)
    return found


def wait_for(
    what: str, ready: Callable[[], bool], timeout: float, *, failed: Callable[[], str | None]
) -> None:
    """Poll `ready` until True; raise `ClusterStartError` on `failed()` or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        reason = failed()
        if reason is not None:
            raise MemberExitedError(f"{what} failed to start: {reason}")
        if time.monotonic() > deadline:
            raise ClusterStartError(f"{what} was not ready within {timeout:.0f} s")
        time.sleep(0.2)


def tail(log: Path, size: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def stop_together(members: Sequence[tuple[int | None, float | None]], grace: float) -> None:
    """SIGTERM every live (pid, start time) at once, SIGKILL what is left after `grace`,
    then their children."""
    live = [(pid, started) for pid, started in members if alive(pid, started)]
    families = [descendants(pid) for pid, _ in live]
    for pid, _ in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid or 0, signal.SIGTERM)
    if not wait_gone([pid for pid, _ in live if pid], grace):
        for pid, started in live:
            kill(pid, started)
    rest = [p for family in families for p in family]
    if rest and not wait_gone([p.pid for p in rest], 5.0):
        signal_all(rest, signal.SIGKILL)
        wait_gone([p.pid for p in rest], 5.0)

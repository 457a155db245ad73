"""PostgreSQL stopped under light load (issue 15, item 6): what clients of `darkroom serve` see.

A PostgreSQL of its own (pgserver, in a data folder under the given directory: never the
tests' shared `.darkroom/test-pg`), one `darkroom serve` (every role) on it, and light
load: writers creating shots (each with an `Idempotency-Key`), a reader listing them, a
`/health` poller and a websocket client subscribed to the writers' projects that resumes
with `since` after any drop. PostgreSQL is stopped in immediate mode for each outage and
started again; afterwards every acknowledged shot must be in the views and have reached
the websocket client exactly once.

    python -m tests.darkroom.pg_outage --outage 10 --outage 40 [--split-roles]

prints the figures as JSON (5xx other than 503, slowest answer during the outage, time
to serve again after the return per kind of request, acknowledged lost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from darkroom.database import parse_url
from realtime.auth import issue_jwt
from tests.darkroom.serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]


class SeparatePostgres:
    """An embedded PostgreSQL in `root/pg`, stopped and started at will."""

    def __init__(self, root: Path) -> None:
        import pgserver

        self.data = root / "pg"
        self.server = pgserver.get_server(self.data, cleanup_mode="stop")
        self.url = self.server.get_uri()
        self.socket_dir = parse_url(self.url).host

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl  # as pgserver runs it (its system user)

        pg_ctl(list(args), pgdata=self.data, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.data / "log"),
            "start",
        )

    def close(self) -> None:
        self.server.cleanup()


@dataclass
class Sample:
    kind: str
    started: float
    ended: float
    status: int  # 0: no answer (transport error or timeout)
    code: str = ""
    traceback: bool = False


@dataclass
class Load:
    base: str
    token: str
    projects: list[str]
    samples: list[Sample] = field(default_factory=list)
    health: dict[str, str] = field(default_factory=dict)  # kind -> base URL of a process
    acknowledged: dict[str, int] = field(default_factory=dict)  # shot id -> position
    stopping: threading.Event = field(default_factory=threading.Event)

    def request(
        self, client: httpx.Client, kind: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError:
            self.samples.append(Sample(kind, started, time.monotonic(), 0))
            return None
        ended = time.monotonic()
        code = ""
        if response.status_code >= 400:
            try:
                code = str(response.json().get("code", ""))
            except ValueError:
                code = "not-json"
        self.samples.append(
            Sample(kind, started, ended, response.status_code, code, "Traceback" in response.text)
        )
        return response

    def writer(self, project: str) -> None:
        with httpx.Client(
            base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {self.token}"}
        ) as client:
            while not self.stopping.is_set():
                response = self.request(
                    client,
                    "write",
                    "POST",
                    "/api/shots",
                    json={"project_id": project, "name": f"s{len(self.samples)}"},
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
                if response is not None and response.status_code == 201:
                    body = response.json()
                    self.acknowledged[body["id"]] = int(
                        response.headers.get("X-Darkroom-Position", 0)
                    )
                time.sleep(0.05)

    def reader(self) -> None:
        with httpx.Client(
            base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {self.token}"}
        ) as client:
            while not self.stopping.is_set():
                self.request(client, "read", "GET", f"/api/shots?projectId={self.projects[0]}")
                for kind, base in (self.health or {"health": self.base}).items():
                    self.request(client, kind, "GET", f"{base}/health")
                time.sleep(0.05)


class Watcher:
    """A websocket client on the projects' topics that resumes with `since` after a drop.

    A shot reaches it once: in the snapshot of its first `subscribed` (the hub takes that
    once the views reached the user's own last write, so the writers' first shots are in
    it, not sent as changes) or as the change after that position."""

    def __init__(self, ws_url: str, token: str, projects: list[str]) -> None:
        self.ws_url, self.token, self.projects = ws_url, token, projects
        self.positions: dict[str, int] = {}
        self.seen: dict[str, list[int]] = {}  # shot id -> positions of its upserts
        self.first_seen: dict[str, float] = {}
        self.closes: list[tuple[float, int | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                await self._session()
            except (TimeoutError, OSError, websockets.WebSocketException) as error:
                code = getattr(error, "code", None) or getattr(
                    getattr(error, "rcvd", None), "code", None
                )
                self.closes.append((time.monotonic(), code))
                await asyncio.sleep(0.2)

    async def _session(self) -> None:
        async with websockets.connect(self.ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "auth", "token": self.token}))
            for topic in (f"project:{p}" for p in self.projects):
                await ws.send(
                    json.dumps(
                        {"type": "subscribe", "topic": topic, "since": self.positions.get(topic)}
                    )
                )
            while not self.stopping.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if frame["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif frame["type"] == "subscribed":
                    self.positions[frame["topic"]] = frame["position"]
                    for shot in (frame.get("snapshot") or {}).get("shots", []):
                        self._saw(shot["id"], frame["position"])
                elif frame["type"] == "change":
                    if frame["position"] <= self.positions.get(frame["topic"], 0):
                        continue
                    self.positions[frame["topic"]] = frame["position"]
                    self._note(frame)

    def _note(self, frame: dict[str, Any]) -> None:
        changes = (
            frame["data"]["changes"]
            if frame["kind"] == "batch"
            else [{"kind": frame["kind"], "data": frame["data"]}]
        )
        for change in changes:
            if change["kind"] == "shot.upserted":
                self._saw(change["data"]["id"], frame["position"])

    def _saw(self, shot: str, position: int) -> None:
        if shot not in self.seen:
            self.first_seen[shot] = time.monotonic()
            self.seen[shot] = []
        self.seen[shot].append(position)


async def probe_websocket(ws_url: str, token: str, topic: str) -> dict[str, Any]:
    """A connection opened while PostgreSQL is down: its frames and how it ends."""
    seen: dict[str, Any] = {"frames": [], "close_code": None}
    try:
        async with websockets.connect(ws_url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            seen["frames"].append(first.get("code") or first["type"])
            if first["type"] == "ready":
                await ws.send(json.dumps({"type": "subscribe", "topic": topic, "ref": 1}))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if frame["type"] != "ping":
                        seen["frames"].append(frame.get("code") or frame["type"])
                        break
            else:
                await asyncio.wait_for(ws.wait_closed(), 5)
            seen["close_code"] = ws.close_code
    except (TimeoutError, OSError, websockets.WebSocketException) as error:
        seen["failed"] = type(error).__name__
    return seen


def measure(
    root: Path,
    outages: list[float],
    *,
    warmup_s: float = 3.0,
    after_s: float = 6.0,
    split_roles: bool = False,
    log_path: Path | None = None,
) -> dict[str, Any]:
    """Run the load, stop PostgreSQL for each of `outages` seconds, and return the figures.
    `split_roles`: `api`, `hub` and `projections` in three processes instead of one; the
    servers' output goes to `log_path` (default: `root/serve.log`)."""
    postgres = SeparatePostgres(root)
    jwt_secret = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "DARKROOM_DB_SCHEMA": "outage",
        "DARKROOM_INFERENCE": "off",
        "DARKROOM_JWT_SECRET": jwt_secret,
        "DARKROOM_SERVICE_KEY": "svc-" + secrets.token_urlsafe(16),
        "DATA_DIR": str(root / "data"),
        "DARKROOM_POOL_SIZE": "4",
    }
    log = (log_path or root / "serve.log").open("wb")
    roles = ["api", "hub", "projections"] if split_roles else ["api,hub,projections,dispatcher"]
    ports = {role: free_port() for role in roles}
    servers = {
        role: subprocess.Popen(
            [sys.executable, "-m", "darkroom", "serve", "--port", str(port), "--role", role],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for role, port in ports.items()
    }
    port = ports[roles[0]]  # the API's
    ws_port = ports["hub"] if split_roles else port
    base = f"http://127.0.0.1:{port}"
    token = issue_jwt(jwt_secret, str(uuid.uuid4()))
    threads: list[threading.Thread] = []
    watcher: Watcher | None = None
    try:
        for role, server in servers.items():
            wait_until_serving(ports[role], server)
        with httpx.Client(
            base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            projects = [
                client.post("/api/projects", json={"name": f"p{i}"}).json()["id"] for i in range(2)
            ]
            pat = client.post("/api/tokens", json={"label": "outage"}).json()["token"]
        load = Load(base, token, projects)
        if split_roles:
            load.health = {f"health:{role}": f"http://127.0.0.1:{p}" for role, p in ports.items()}
        watcher = Watcher(f"ws://127.0.0.1:{ws_port}/ws", token, projects)
        threads = [threading.Thread(target=load.writer, args=(p,), daemon=True) for p in projects]
        threads += [
            threading.Thread(target=load.reader, daemon=True),
            threading.Thread(target=watcher.run, daemon=True),
        ]
        for thread in threads:
            thread.start()
        time.sleep(warmup_s)
        windows: list[tuple[float, float]] = []
        probes: list[dict[str, Any]] = []
        for seconds in outages:
            down = time.monotonic()
            postgres.stop()
            time.sleep(min(2.0, seconds / 2))
            # New connections while it is down: with a JWT (checked without the
            # database) and with a personal access token (looked up in it).
            ws_url = f"ws://127.0.0.1:{ws_port}/ws"
            probes.append(
                {
                    kind: asyncio.run(probe_websocket(ws_url, credential, f"project:{projects[0]}"))
                    for kind, credential in (("jwt", token), ("pat", pat))
                }
            )
            time.sleep(max(0.0, down + seconds - time.monotonic()))
            postgres.start()
            windows.append((down, time.monotonic()))
            time.sleep(after_s)
        load.stopping.set()
        for thread in threads[:-1]:
            thread.join(timeout=90)
        # The last writes reach the views and the websocket client.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and set(load.acknowledged) - set(watcher.seen):
            time.sleep(0.1)
        watcher.stopping.set()
        threads[-1].join(timeout=10)
        with httpx.Client(
            base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            head = max(load.acknowledged.values(), default=0)
            listed: set[str] = set()
            for project in projects:
                rows = client.get(
                    f"/api/shots?projectId={project}&limit=1000&min_position={head}"
                ).json()
                items = rows["items"] if isinstance(rows, dict) else rows
                listed |= {row["id"] for row in items}
        result = figures(
            load,
            watcher,
            windows,
            listed,
            all(server.poll() is None for server in servers.values()),
        )
        result["processes"] = roles
        for outage, probe in zip(result["outages"], probes, strict=True):
            outage["new_websockets_during"] = probe
        return result
    finally:
        if watcher is not None:
            watcher.stopping.set()
        for server in servers.values():
            server.send_signal(signal.SIGTERM)
        for server in servers.values():
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
        postgres.close()


def figures(
    load: Load,
    watcher: Watcher,
    windows: list[tuple[float, float]],
    listed: set[str],
    server_alive: bool,
) -> dict[str, Any]:
    samples = list(load.samples)
    per_outage = []
    for down, up in windows:
        during = [s for s in samples if s.ended >= down and s.started <= up]
        after = [s for s in samples if s.ended >= up]
        back: dict[str, float | None] = {}
        for kind in ("write", "read", *(load.health or ["health"])):
            ok = [s.ended - up for s in after if s.kind == kind and s.status < 400]
            back[kind] = round(min(ok), 3) if ok else None
        # A write acknowledged after the return reached the views and the hub: the
        # projections runner and the hub serve again.
        firsts = [
            watcher.first_seen[shot] - up
            for shot in watcher.first_seen
            if watcher.first_seen[shot] >= up
        ]
        back["projections_and_hub"] = round(min(firsts), 3) if firsts else None
        unavailable = [s for s in during if s.status == 503]
        per_outage.append(
            {
                "outage_s": round(up - down, 1),
                "requests_during": len(during),
                "answered_503": len(unavailable),
                "codes_503": sorted({s.code for s in unavailable}),
                "max_503_latency_s": round(
                    max((s.ended - s.started for s in unavailable), default=0.0), 3
                ),
                "max_latency_during_s": round(
                    max((s.ended - s.started for s in during), default=0.0), 3
                ),
                "serving_again_after_return_s": back,
            }
        )
    acknowledged = set(load.acknowledged)
    doubled = sorted(
        shot for shot, seen in watcher.seen.items() if len(seen) > 1 and len(set(seen)) != len(seen)
    )
    return {
        "requests": len(samples),
        "writes_acknowledged": len(acknowledged),
        "http_5xx_other_than_503": sum(1 for s in samples if s.status >= 500 and s.status != 503),
        "no_answer": sum(1 for s in samples if s.status == 0),
        "tracebacks_in_answers": sum(1 for s in samples if s.traceback),
        "other_errors": sorted({f"{s.status} {s.code}" for s in samples if 400 <= s.status < 500}),
        "acknowledged_lost_from_views": len(acknowledged - listed),
        "acknowledged_missed_by_websocket": len(acknowledged - set(watcher.seen)),
        "websocket_changes_doubled": len(doubled),
        "websocket_closes": [code for _, code in watcher.closes],
        "server_alive": server_alive,
        "outages": per_outage,
    }


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--outage",
        type=float,
        action="append",
        help="seconds PostgreSQL stays down (repeat for several)",
    )
    parser.add_argument(
        "--split-roles", action="store_true", help="api, hub and projections in three processes"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="darkroom-outage-") as root:
        result = measure(Path(root), args.outage or [10.0], split_roles=args.split_roles)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""HTTP API throughput and latency, beside the same commands called in-process.

A mixed workload, one step after another per client: create a generation, add
it to the client's shot, reorder the shot's last five images, star the
generation, queue a task (`image_upscale` family). Each client is its own user
with its own project and shot. HTTP: a real `darkroom serve` process (uvicorn,
projections running in-process, as served) and httpx clients over loopback,
all on this machine's 2 cores. In-process: the same verbs on a `Studio` from N
threads, in a fresh schema, with no server running. `--split`: the API in a process of
its own (`DARKROOM_ROLES=api`) and the projections runner in another
(`DARKROOM_ROLES=projections`), so the runner no longer shares the API's GIL.

The ceiling (issue 17): a bare Starlette + uvicorn + psycopg-pool app, one INSERT per
request, on the same PostgreSQL at the same client counts, in its own process under the
same uvicorn options; printed beside Darkroom as HTTP/bare. `--http`/`--loop` pick
uvicorn's HTTP parser and event loop for both servers.

CPU per command (load-proof, unlike the rates): from the moment every client is set up
to the end of each run, the CPU time (user + system, from /proc) of the server process
with its children (the projections writer), of the PostgreSQL backends serving it
(found by their `application_name`, set through `PGAPPNAME`), and of this process (the
clients), each divided by the commands (or requests) answered.

    python bench/api.py [--seconds 6] [--clients 1,16,64] [--split] [--http h11|httptools]
        [--loop asyncio|uvloop] [--no-bare] [--no-inprocess] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkroom.database import Database, create_schema, drop_schema, resolve
from darkroom.wiring import build_studio
from domain.metadata import CommandMeta
from realtime.auth import issue_jwt

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-of-at-least-thirty-two-bytes"
OPS = ("create_generation", "add_to_shot", "reorder", "star", "create_task")
# Both servers run under the options `darkroom serve` uses (guarded h11 unless `--http
# httptools`, websockets-sansio, no deflate); argv: port, http, loop.
UVICORN = (
    "import sys, uvicorn\n"
    "from darkroom.limits import ServerLimits, guarded_h11\n"
    "def serve(app):\n"
    "    limits = ServerLimits()\n"
    "    http = guarded_h11(limits) if sys.argv[2] == 'h11' else sys.argv[2]\n"
    "    uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning',\n"
    "                access_log=False, http=http, loop=sys.argv[3], ws='websockets-sansio',\n"
    "                ws_per_message_deflate=False, ws_max_size=limits.ws_max_frame_bytes)\n"
)
LAUNCH = UVICORN + (
    "import realtime.auth\n"
    "realtime.auth.JWT_CACHE_SIZE = int(sys.argv[4])\n"
    "from darkroom.settings import Settings\n"
    "from darkroom.wiring import build_app\n"
    "serve(build_app(Settings()))\n"
)
# The ceiling: Starlette + uvicorn + a psycopg pool, one INSERT per request, nothing else.
BARE = UVICORN + (
    "import os, orjson\n"
    "from contextlib import asynccontextmanager\n"
    "from psycopg_pool import AsyncConnectionPool\n"
    "from starlette.applications import Starlette\n"
    "from starlette.responses import JSONResponse, Response\n"
    "from starlette.routing import Route\n"
    "pool = AsyncConnectionPool(os.environ['DATABASE_URL'], min_size=16, max_size=16, open=False,\n"
    "    kwargs={'options': '-c search_path=' + os.environ['DARKROOM_DB_SCHEMA']})\n"
    "async def health(request):\n"
    "    return Response('ok')\n"
    "async def insert(request):\n"
    "    body = await request.body()\n"
    "    async with pool.connection() as conn:\n"
    "        row = await (await conn.execute(\n"
    "            'INSERT INTO bare_rows (body) VALUES (%s) RETURNING id', (body.decode(),))\n"
    "        ).fetchone()\n"
    "    return JSONResponse({'id': row[0]}, status_code=201)\n"
    "@asynccontextmanager\n"
    "async def lifespan(app):\n"
    "    await pool.open()\n"
    "    async with pool.connection() as conn:\n"
    "        await conn.execute('CREATE TABLE IF NOT EXISTS bare_rows '\n"
    "                           '(id bigserial PRIMARY KEY, body jsonb NOT NULL)')\n"
    "    yield\n"
    "    await pool.close()\n"
    "serve(Starlette(routes=[Route('/health', health), Route('/insert', insert,\n"
    "    methods=['POST'])], lifespan=lifespan))\n"
)


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # per part, over the run

    def add(self, op: str, seconds: float) -> None:
        self.latencies[op].append(seconds)

    def merge(self, other: Tally) -> None:
        for op, values in other.latencies.items():
            self.latencies[op] += values
        self.errors += other.errors

    @property
    def all(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(tally: Tally, seconds: float) -> dict[str, Any]:
    values = tally.all
    return {
        "commands": len(values),
        "per_s": len(values) / seconds,
        "p50_ms": pct(values, 0.50),
        "p99_ms": pct(values, 0.99),
        "errors": tally.errors,
        "by_op_p50_ms": {op: pct(v, 0.5) for op, v in tally.latencies.items()},
        "cpu_ms": {part: s * 1000 / max(1, len(values)) for part, s in tally.cpu_s.items()},
    }


# -- CPU per command ------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


@dataclass
class Meter:
    """The CPU seconds of a server, its children (the projections writer), its PostgreSQL
    backends and this process (the clients), read at the window's start and end."""

    db: Database
    server: int
    appname: str
    start: dict[int, float] = field(default_factory=dict)

    def read(self) -> dict[str, dict[int, float]]:
        with psycopg.connect(self.db.conninfo, autocommit=True) as conn:
            backends = [
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                    (self.appname,),
                )
            ]
        return {
            "server": {self.server: proc_cpu_s(self.server)},
            "children": {p: proc_cpu_s(p) for p in descendants(self.server)},
            "postgres": {p: proc_cpu_s(p) for p in backends},
            "clients": {os.getpid(): sum(os.times()[:2])},
        }

    def begin(self) -> None:
        self.first = self.read()

    def end(self, tally: Tally) -> None:
        last = self.read()
        for part, now in last.items():
            # A process that appeared during the window counts from zero.
            tally.cpu_s[part] = sum(s - self.first[part].get(p, 0.0) for p, s in now.items())


# -- HTTP -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    db: Database,
    schema: str,
    roles: str = "api,hub,projections",
    *,
    code: str = LAUNCH,
    http: str = "h11",
    loop: str = "asyncio",
    jwt_cache: int = 10_000,
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"postgresql://{db.user}:{db.password}@/{db.dbname}?host={db.host}&port={db.port}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DARKROOM_DB_SCHEMA": schema,
        "DARKROOM_JWT_SECRET": SECRET,
        "DARKROOM_TASK_RATE_LIMIT": str(10**9),
        "DATA_DIR": str(ROOT / ".darkroom" / "bench-data"),
        "DARKROOM_ROLES": roles,
        "DARKROOM_JWT_SUB_ANY": "y",
        "PGAPPNAME": f"bench-{schema}",  # its PostgreSQL backends, for the CPU meter
    }  # users are named `bench-<hex>`
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(port), http, loop, str(jwt_cache)], cwd=ROOT, env=env
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


async def http_client(base: str, window: Window, tally: Tally) -> None:
    # One connection per client, as each browser tab has: a pool shared by 64 coroutines
    # costs the client more than the server (measured: /health 120/s shared, 270/s not).
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await http_steps(client, window, tally)


class Window:
    """Every client sets up (user, project, shot) first; the clock starts after that."""

    def __init__(self, clients: int, seconds: float, meter: Meter | None = None) -> None:
        self.ready = asyncio.Barrier(clients)
        self.seconds = seconds
        self.stop_at = 0.0
        self.started = 0.0
        self.meter = meter

    async def open(self) -> float:
        if await self.ready.wait() == 0:
            if self.meter is not None:
                self.meter.begin()
            self.started = time.monotonic()
            self.stop_at = self.started + self.seconds
        await self.ready.wait()
        return self.stop_at


async def http_steps(client: httpx.AsyncClient, window: Window, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {issue_jwt(SECRET, f'bench-{uuid.uuid4().hex}')}"}
    project = (await client.post("/api/projects", json={"name": "Bench"}, headers=headers)).json()[
        "id"
    ]
    shot = (
        await client.post("/api/shots", json={"project_id": project, "name": "S"}, headers=headers)
    ).json()["id"]
    stop_at = await window.open()
    mine: list[str] = []
    state: dict[str, str] = {}

    def requests() -> dict[str, Callable[[], Any]]:
        return {
            "create_generation": lambda: client.post(
                "/api/generations",
                headers=headers,
                json={"project_id": project, "location": "/media/bench.png"},
            ),
            "add_to_shot": lambda: client.post(
                "/api/shots/shot_generations",
                headers=headers,
                json={"shot_id": shot, "generation_id": state["g"]},
            ),
            "reorder": lambda: client.put(
                f"/api/shots/{shot}/generations/order",
                headers=headers,
                json={"orderedGenerationIds": mine[-5:][::-1]},
            ),
            "star": lambda: client.patch(
                f"/api/generations/{state['g']}", headers=headers, json={"starred": True}
            ),
            "create_task": lambda: client.post(
                "/api/tasks",
                headers=headers,
                json={
                    "family": "image_upscale",
                    "project_id": project,
                    "input": {"image_url": "/media/bench.png", "based_on": state["g"]},
                },
            ),
        }

    calls = requests()
    while time.monotonic() < stop_at:
        for op in OPS:
            started = time.perf_counter()
            answer = await calls[op]()
            tally.add(op, time.perf_counter() - started)
            if answer.status_code >= 300:
                tally.errors += 1
            elif op == "create_generation":
                state["g"] = answer.json()["id"]
                mine.append(state["g"])


async def http_run(base: str, clients: int, seconds: float, meter: Meter) -> dict[str, Any]:
    tally, window = Tally(), Window(clients, seconds, meter)
    await asyncio.gather(*(http_client(base, window, tally) for _ in range(clients)))
    ended = time.monotonic()
    meter.end(tally)
    return summary(tally, ended - window.started)


async def bare_client(base: str, window: Window, tally: Tally) -> None:
    """The ceiling's client: the same loop, one POST (one INSERT) per request."""
    body = {"project_id": str(uuid.uuid4()), "location": "/media/bench.png"}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        stop_at = await window.open()
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            answer = await client.post("/insert", json=body)
            tally.add("insert", time.perf_counter() - started)
            if answer.status_code >= 300:
                tally.errors += 1


async def bare_run(base: str, clients: int, seconds: float, meter: Meter) -> dict[str, Any]:
    tally, window = Tally(), Window(clients, seconds, meter)
    await asyncio.gather(*(bare_client(base, window, tally) for _ in range(clients)))
    ended = time.monotonic()
    meter.end(tally)
    return summary(tally, ended - window.started)


# -- in-process ---------------------------------------------------------------------------
def inprocess_client(
    studio: Any, window: list[float], ready: threading.Barrier, tally: Tally, lock: threading.Lock
) -> None:
    user = f"bench-{uuid.uuid4().hex}"
    meta = CommandMeta.for_user(user)
    studio.ensure_user(user)
    project = studio.create_project(user, "Bench")["project_id"]
    shot = studio.create_shot(project, user, "S")["shot_id"]
    if ready.wait() == 0:
        window[:] = [time.monotonic(), time.monotonic() + window[0]]
    ready.wait()
    stop_at = window[1]
    mine: list[str] = []
    local = Tally()
    g = ""
    while time.monotonic() < stop_at:
        for op in OPS:
            started = time.perf_counter()
            if op == "create_generation":
                g = studio.create_generation(project, user, "/media/bench.png", meta=meta)[
                    "generation_id"
                ]
                mine.append(g)
            elif op == "add_to_shot":
                studio.add_to_shot(shot, user, g, meta=meta)
            elif op == "reorder":
                studio.reorder_shot(shot, user, mine[-5:][::-1], meta=meta)
            elif op == "star":
                studio.star_generation(g, user, True, meta=meta)
            else:
                studio.create_tasks(
                    project,
                    user,
                    [
                        {
                            "task_type": "image_upscale",
                            "params": {"image_url": "/media/bench.png", "based_on": g},
                        }
                    ],
                    meta=meta,
                )
            local.add(op, time.perf_counter() - started)
    with lock:
        tally.merge(local)


def inprocess_run(studio: Any, clients: int, seconds: float) -> dict[str, Any]:
    tally, lock, ready = Tally(), threading.Lock(), threading.Barrier(clients)
    window = [seconds]
    threads = [
        threading.Thread(target=inprocess_client, args=(studio, window, ready, tally, lock))
        for _ in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(tally, time.monotonic() - window[0])


# -- main ---------------------------------------------------------------------------------
def cpu_loop_ms() -> float:
    """The machine's speed right now: a fixed pure-Python loop (10 million additions)."""
    started, total = time.perf_counter(), 0
    for i in range(10_000_000):
        total += i
    return (time.perf_counter() - started) * 1000


def serve_and_run(
    db: Database, schema: str, args: argparse.Namespace, levels: list[int], *, bare: bool
) -> dict[int, Any]:
    """One server (Darkroom, or with `bare` the ceiling), every client count, then stop it."""
    options: dict[str, Any] = {"http": args.http, "loop": args.loop}
    if bare:
        servers = [start_server(db, schema, code=BARE, **options)]
    else:
        options["jwt_cache"] = 0 if args.no_jwt_cache else 10_000
        servers = [start_server(db, schema, "projections")] if args.split else []
        roles = "api" if args.split else "api,hub,projections"
        servers.append(start_server(db, schema, roles, **options))
    print(f"{'bare' if bare else 'darkroom'} server pid {servers[-1][0].pid}", file=sys.stderr)
    run = bare_run if bare else http_run
    meter = Meter(db, servers[-1][0].pid, f"bench-{schema}")
    try:
        return {n: asyncio.run(run(servers[-1][1], n, args.seconds, meter)) for n in levels}
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument(
        "--split", action="store_true", help="API and projections runner in two processes"
    )
    parser.add_argument("--http", choices=("h11", "httptools"), default="h11")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-stack ceiling")
    parser.add_argument("--no-inprocess", action="store_true", help="skip the in-process run")
    parser.add_argument(
        "--no-jwt-cache", action="store_true", help="Darkroom without its verified-JWT cache"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    db = resolve(os.environ.get("DATABASE_URL"), ROOT / ".darkroom" / "bench-pg")
    http_schema, local_schema, bare_schema = (
        f"bench_api_{k}_{uuid.uuid4().hex[:6]}" for k in "hlb"
    )
    for schema in (http_schema, local_schema, bare_schema):
        create_schema(db, schema)
    loop_ms = cpu_loop_ms()
    results: dict[str, dict[int, Any]] = {"http": {}, "inprocess": {}, "bare": {}}
    try:
        results["http"] = serve_and_run(db, http_schema, args, levels, bare=False)
        if not args.no_bare:
            results["bare"] = serve_and_run(db, bare_schema, args, levels, bare=True)
        if not args.no_inprocess:
            studio = build_studio(db, local_schema, pool_size=16)
            try:
                for n in levels:
                    results["inprocess"][n] = inprocess_run(studio, n, args.seconds)
            finally:
                studio.close()
    finally:
        for schema in (http_schema, local_schema, bare_schema):
            drop_schema(db, schema)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, CPU loop {loop_ms:.0f} ms, "
        f"{args.seconds:g} s per run, uvicorn {args.http} + {args.loop}, "
        f"JWT cache {'off' if args.no_jwt_cache else 'on'}"
        f"{', API and projections in two processes' if args.split else ''}; "
        f"mixed: {', '.join(OPS)}"
    )
    print(
        f"{'clients':>7} | {'HTTP cmd/s':>10} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'bare req/s':>10} {'p50 ms':>7} | {'HTTP/bare':>9} | "
        f"{'in-proc cmd/s':>13} {'p50 ms':>7} {'p99 ms':>7} | {'HTTP/in-proc':>12} | errors"
    )
    nan = {"per_s": float("nan"), "p50_ms": float("nan"), "p99_ms": float("nan"), "errors": "-"}
    for n in levels:
        h = results["http"][n]
        b, i = results["bare"].get(n, nan), results["inprocess"].get(n, nan)
        print(
            f"{n:>7} | {h['per_s']:>10.0f} {h['p50_ms']:>7.1f} {h['p99_ms']:>7.1f} | "
            f"{b['per_s']:>10.0f} {b['p50_ms']:>7.1f} | {h['per_s'] / b['per_s']:>9.2f} | "
            f"{i['per_s']:>13.0f} {i['p50_ms']:>7.1f} {i['p99_ms']:>7.1f} | "
            f"{h['per_s'] / i['per_s']:>12.2f} | {h['errors']}/{b['errors']}/{i['errors']}"
        )
    for n in levels:
        for name in ("http", "bare"):
            cpu = results[name].get(n, {}).get("cpu_ms")
            if cpu:
                print(
                    f"CPU ms per {'command' if name == 'http' else 'request'} at {n} clients "
                    f"({'Darkroom' if name == 'http' else 'bare'}): "
                    + ", ".join(f"{part} {ms:.2f}" for part, ms in cpu.items())
                    + f", all {sum(cpu.values()):.2f}"
                )
    for n in levels:
        print(
            f"p50 by op at {n} clients (HTTP): "
            + ", ".join(f"{op} {ms:.1f}" for op, ms in results["http"][n]["by_op_p50_ms"].items())
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

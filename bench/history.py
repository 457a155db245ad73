"""Command latency against history length: snapshots + aggregate cache vs full replay.

For each hot aggregate kind, ONE instance is grown to each of `--sizes` events
(10 → 1,000 → 10,000 → 100,000 by default) and, at each size, its usual command
is timed on two fresh `Studio`s (cold caches):

- new path: `build_studio(..., snapshots=True, cache_size=10_000)`, as served;
- today's path: `snapshots=False, cache_size=0` (every load replays the stream).

Growing goes through the aggregate's own decision methods and `Studio.save` in
chunks of `--chunk` events, on a studio with snapshots on, so snapshots are
written as they would be by commands (one per save that crosses a multiple of
the interval). The timed commands add events too: the "measured over" column
gives the stream's length before the new path's first and after the last command.

Shared cores drift in speed. So that the 100,000-vs-10 comparison is not a
comparison of two moments, the new path at every size also times, alternately
with the big instance, a fresh instance of the same kind grown to the smallest
size (the "ctl" columns); the acceptance bar is checked both ways.

Bar (issue 11): new path p50 at 100,000 events ≤ 1.25 x p50 at 10 events, and
p99 at 100,000 ≤ 2 x p99 at 10.

    python bench/history.py [--sizes 10,1000,10000,100000] [--samples 200]
        [--old-samples-budget 200000] [--old-path-max N] [--kinds workload,ledger,...]
        [--chunk 500] [--hot-seconds 10] [--keep]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast
from uuid import UUID

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventsourcing.domain import Aggregate

from darkroom.database import Database, create_schema, drop_schema, resolve
from darkroom.wiring import build_studio
from domain.credits import CreditLedger
from domain.generation import Generation
from domain.project import Project
from domain.repository import SnapshottingRepository
from domain.services.base import now
from domain.shot import Shot
from domain.studio import SNAPSHOT_INTERVALS, Studio
from domain.task import CANCELLED, QUEUED, Task
from domain.worker import Worker
from domain.workload import Workload

ROOT = Path(__file__).resolve().parent.parent
NEW = {"snapshots": True, "cache_size": 10_000}
OLD = {"snapshots": False, "cache_size": 0}
BAR_P50, BAR_P99 = 1.25, 2.0


# -- the subjects: one instance of an aggregate kind, its growth step and its command ----
class Subject:
    """One instance of a kind: made through the verbs, grown through its own methods."""

    kind: ClassVar[str]
    command_label: ClassVar[str]
    aggregate_id: UUID

    def __init__(self, studio: Studio) -> None:
        self.owner = f"bench-{self.kind}-{uuid.uuid4().hex[:8]}"

    def step(self, aggregate: Any) -> None:
        """One or two events on the loaded aggregate, through its decision methods."""
        raise NotImplementedError

    def command(self, studio: Studio) -> None:
        """The kind's usual command (or commands), through the studio's verbs."""
        raise NotImplementedError

    def loaded(self, aggregate: Any) -> None:
        """Picks up what the steps changed that the commands need to know."""

    def grow(self, studio: Studio, target: int, chunk: int) -> int:
        aggregate: Any = studio.repository.get(self.aggregate_id)
        saved = aggregate.version
        while aggregate.version < target:
            self.step(aggregate)
            if aggregate.version - saved >= chunk:
                studio.save(aggregate)
                saved = aggregate.version
        if aggregate.version > saved:
            studio.save(aggregate)
        studio.flush_snapshots()  # written by a background thread: measure with them in
        self.loaded(aggregate)
        return int(aggregate.version)


class WorkloadSubject(Subject):
    kind = "workload"
    command_label = "create_task + cancel_task (2 commands; +2 workload events)"

    def __init__(self, studio: Studio) -> None:
        super().__init__(studio)
        studio.ensure_user(self.owner)
        self.project_id = str(studio.create_project(self.owner, "Film")["project_id"])
        self.aggregate_id = Workload.id_for(self.owner)
        self.command(studio)  # the workload exists from the owner's first task

    def step(self, aggregate: Workload) -> None:
        task = SimpleNamespace(
            id=uuid.uuid4(),
            owner_id=self.owner,
            status=QUEUED,
            project_id=UUID(self.project_id),
            is_orchestrator=False,
        )
        aggregate.track(cast(Task, task))
        task.status = CANCELLED
        aggregate.track(cast(Task, task))

    def command(self, studio: Studio) -> None:
        made = studio.create_task(
            self.project_id, self.owner, "image_generation", {"prompt": "a lighthouse"}
        )
        studio.cancel_task(made["task_id"], self.owner)


class LedgerSubject(Subject):
    kind = "ledger"
    command_label = "grant_credits (+1 ledger event)"

    def __init__(self, studio: Studio) -> None:
        super().__init__(studio)
        studio.ensure_user(self.owner)
        self.aggregate_id = CreditLedger.id_for(self.owner)

    def step(self, aggregate: CreditLedger) -> None:
        aggregate.grant(Decimal(1), "bench", now())

    def command(self, studio: Studio) -> None:
        studio.grant_credits(self.owner, 1, "bench")


class GenerationSubject(Subject):
    kind = "generation"
    command_label = "star_generation, alternately True/False (+1 event)"

    def __init__(self, studio: Studio) -> None:
        super().__init__(studio)
        self.project_id = str(studio.create_project(self.owner, "Film")["project_id"])
        made = studio.create_generation(self.project_id, self.owner, "/media/bench.png")
        self.aggregate_id = UUID(made["generation_id"])
        self.starred = False

    def step(self, aggregate: Generation) -> None:
        aggregate.star(not aggregate.starred)

    def loaded(self, aggregate: Generation) -> None:
        self.starred = aggregate.starred

    def command(self, studio: Studio) -> None:
        self.starred = not self.starred
        studio.star_generation(self.aggregate_id, self.owner, self.starred)


class ShotSubject(Subject):
    kind = "shot"
    command_label = "move_in_shot, frame 0/50 alternately (+1 event)"

    def __init__(self, studio: Studio) -> None:
        super().__init__(studio)
        self.project_id = str(studio.create_project(self.owner, "Film")["project_id"])
        generation = studio.create_generation(self.project_id, self.owner, "/media/bench.png")
        made = studio.create_shot(
            self.project_id, self.owner, "Shot", generation_id=generation["generation_id"]
        )
        self.aggregate_id = UUID(made["shot_id"])
        self.member = UUID(made["shot_generation_id"])
        self.moves = 0

    def frame(self) -> int:
        self.moves += 1
        return 50 * (self.moves % 2)

    def step(self, aggregate: Shot) -> None:
        aggregate.move(self.member, self.frame())

    def command(self, studio: Studio) -> None:
        studio.move_in_shot(self.aggregate_id, self.owner, self.member, self.frame())


class WorkerSubject(Subject):
    """A heartbeat is no event (the pulse row takes it) but loads the worker; the
    worker's stream grows with the tasks it takes and releases (2 events a task)."""

    kind = "worker"
    command_label = "heartbeat (loads the worker, touches the pulse; no event)"
    START = datetime(2024, 1, 1, tzinfo=UTC)

    def __init__(self, studio: Studio) -> None:
        super().__init__(studio)
        self.worker_id = self.owner
        self.aggregate_id = Worker.id_for(self.worker_id)
        self.clock = self.START
        studio.heartbeat(self.worker_id, now=self.tick())

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=20)
        return self.clock

    def step(self, aggregate: Worker) -> None:
        task_id = uuid.uuid4()
        aggregate.take(task_id, self.tick())
        aggregate.release(task_id)

    def command(self, studio: Studio) -> None:
        studio.heartbeat(self.worker_id, now=self.tick())


class ProjectSubject(Subject):
    kind = "project"
    command_label = "create_shot (+1 ShotPlaced on the project, 1 new shot)"

    def __init__(self, studio: Studio) -> None:
        super().__init__(studio)
        self.project_id = str(studio.create_project(self.owner, "Film")["project_id"])
        self.aggregate_id = UUID(self.project_id)

    def step(self, aggregate: Project) -> None:
        aggregate.take_shot_position()

    def command(self, studio: Studio) -> None:
        studio.create_shot(self.project_id, self.owner, "Shot")


KINDS: dict[str, type[Subject]] = {
    s.kind: s
    for s in (
        WorkloadSubject,
        LedgerSubject,
        GenerationSubject,
        ShotSubject,
        WorkerSubject,
        ProjectSubject,
    )
}


# -- measuring --------------------------------------------------------------------------
def rss_mb() -> float:
    """This process's resident set (it is the serving process: the studio runs in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    """Milliseconds at quantile q (nearest rank below; with few samples p99 is the max)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def machine_speed() -> float:
    """Seconds a fixed CPU loop takes (the same loop as bench/projections.py: about
    0.31 s is this box at its usual speed)."""
    started = time.perf_counter()
    sum(range(30_000_000))
    return time.perf_counter() - started


def timed(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


@dataclass
class Phase:
    """One path at one size: latencies in seconds, the first (cold) command apart."""

    latencies: list[float] = field(default_factory=list)
    cold: float = float("nan")
    control: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def p50(self) -> float:
        return pct(self.latencies, 0.50)

    @property
    def p99(self) -> float:
        return pct(self.latencies, 0.99)


def measure(
    studio: Studio, subject: Subject, warmup: int, samples: int, control: Subject | None = None
) -> Phase:
    """`warmup` commands (the first is the cold one), then `samples` timed ones; with a
    control, its commands alternate with the subject's, so both see the same load."""
    phase = Phase()
    phase.cold = timed(lambda: subject.command(studio))
    for _ in range(max(0, warmup - 1)):
        subject.command(studio)
    if control is not None:
        for _ in range(max(1, warmup)):
            control.command(studio)
    for _ in range(samples):
        phase.latencies.append(timed(lambda: subject.command(studio)))
        if control is not None:
            phase.control.append(timed(lambda: control.command(studio)))
    return phase


def version_of(studio: Studio, aggregate_id: UUID) -> int:
    aggregate: Aggregate = studio.repository.get(aggregate_id)
    return int(aggregate.version)


@dataclass
class Row:
    size: int
    grown_to: int
    measured_to: int
    grow_seconds: float
    new: Phase
    old: Phase
    old_samples: int
    rss_grown: float
    rss_new: float
    rss_old: float


def run_kind(
    db: Database,
    schema: str,
    grower: Studio,
    cls: type[Subject],
    args: argparse.Namespace,
    sizes: list[int],
) -> tuple[list[Row], UUID]:
    subject = cls(grower)
    rows: list[Row] = []
    for size in sizes:
        started = time.perf_counter()
        grown_to = subject.grow(grower, size, args.chunk)
        grow_seconds = time.perf_counter() - started
        gc.collect()
        rss_grown = rss_mb()

        # A fresh instance at the smallest size, timed alongside (see the module doc).
        control = cls(grower)
        control.grow(grower, sizes[0], args.chunk)

        studio = build_studio(db, schema, pool_size=4, **NEW)  # type: ignore[arg-type]
        try:
            new = measure(studio, subject, args.warmup, args.samples, control)
        finally:
            studio.close()
        rss_new = rss_mb()

        old_samples = min(
            args.samples, max(args.old_samples_min, args.old_samples_budget // max(1, size))
        )
        if args.old_path_max is not None and size > args.old_path_max:
            old = Phase(skipped=f"skipped: size > --old-path-max {args.old_path_max}")
            old_samples = 0
        else:
            studio = build_studio(db, schema, pool_size=4, **OLD)  # type: ignore[arg-type]
            try:
                # Every load replays the whole stream: one warm-up command is plenty.
                old = measure(studio, subject, 1, old_samples)
            finally:
                studio.close()
        rss_old = rss_mb()
        measured_to = version_of(grower, subject.aggregate_id)
        subject.loaded(grower.repository.get(subject.aggregate_id))
        rows.append(
            Row(
                size,
                grown_to,
                measured_to,
                grow_seconds,
                new,
                old,
                old_samples,
                rss_grown,
                rss_new,
                rss_old,
            )
        )
        print_row(rows[-1], rows[0])
    return rows, subject.aggregate_id


# -- printing ---------------------------------------------------------------------------
def ms(value: float) -> str:
    return "—" if value != value else (f"{value:.1f}" if value >= 100 else f"{value:.2f}")


def ratio(a: float, b: float) -> str:
    return "—" if not (a == a and b == b and b) else f"{a / b:.2f}x"


HEADER = (
    "| events | measured over | grow s | new p50 | new p99 | new cold | ctl p50 | ctl p99 "
    "| old p50 | old p99 | old n | new p50 ÷ p50@first | new p50 ÷ ctl p50 "
    "| old p50 ÷ new p50 | RSS MB grown / new / old | load |"
)


def print_row(row: Row, first: Row) -> None:
    new, old = row.new, row.old
    ctl50, ctl99 = pct(new.control, 0.5), pct(new.control, 0.99)
    old50 = old.skipped or ms(old.p50)
    old99 = "—" if old.skipped else ms(old.p99)
    print(
        f"| {row.size:,} | {row.grown_to:,}→{row.measured_to:,} | {row.grow_seconds:.1f} "
        f"| {ms(new.p50)} | {ms(new.p99)} | {ms(new.cold * 1000)} | {ms(ctl50)} | {ms(ctl99)} "
        f"| {old50} | {old99} | {row.old_samples} | {ratio(new.p50, first.new.p50)} "
        f"| {ratio(new.p50, ctl50)} | {ratio(old.p50, new.p50)} "
        f"| {row.rss_grown:.0f} / {row.rss_new:.0f} / {row.rss_old:.0f} "
        f"| {os.getloadavg()[0]:.1f} |",
        flush=True,
    )


def verdict(kind: str, rows: list[Row]) -> tuple[bool, str]:
    first, last = rows[0], rows[-1]
    p50_r = last.new.p50 / first.new.p50
    p99_r = last.new.p99 / first.new.p99
    ok = p50_r <= BAR_P50 and p99_r <= BAR_P99
    ctl50 = pct(last.new.control, 0.5)
    ctl99 = pct(last.new.control, 0.99)
    c50_r, c99_r = last.new.p50 / ctl50, last.new.p99 / ctl99
    ctl_ok = c50_r <= BAR_P50 and c99_r <= BAR_P99
    text = (
        f"{kind:<10} {'PASS' if ok else 'FAIL'}: p50 {ms(last.new.p50)} ms at "
        f"{last.size:,} vs {ms(first.new.p50)} ms at {first.size:,} = {p50_r:.2f}x "
        f"(bar {BAR_P50}x); p99 {ms(last.new.p99)} vs {ms(first.new.p99)} = {p99_r:.2f}x "
        f"(bar {BAR_P99}x) | against the control timed alongside: "
        f"{'PASS' if ctl_ok else 'FAIL'} (p50 {c50_r:.2f}x, p99 {c99_r:.2f}x)"
    )
    return ok, text


def postgres_version(db: Database) -> str:
    with psycopg.connect(db.conninfo) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def snapshot_count(db: Database, schema: str, aggregate_ids: list[UUID]) -> int:
    with psycopg.connect(db.conninfo) as conn:
        row = conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {} WHERE originator_id = ANY(%s)").format(
                psycopg.sql.Identifier(schema, "darkroom_snapshots")
            ),
            [aggregate_ids],
        ).fetchone()
    return int(row[0]) if row else 0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def hot_aggregate(db: Database, seconds: float) -> None:
    print(f"\n## Hot aggregate (bench/hot_aggregate.py, {seconds:g} s per run)\n")
    try:
        module = importlib.import_module("bench.hot_aggregate")
    except ImportError:
        try:
            sys.path.insert(0, str(ROOT / "bench"))
            module = importlib.import_module("hot_aggregate")
        except ImportError as error:
            print(f"bench/hot_aggregate.py is not there yet ({error}): skipped.")
            return
    run = getattr(module, "run", None)
    if run is None:
        print("bench/hot_aggregate.py has no run(database, seconds): skipped.")
        return
    result: dict[str, Any] = run(db, seconds)
    print(
        f"{result.get('threads', '?')} threads saving one aggregate; saves/s "
        "(ours = GroupCommitRecorder, library = PostgresApplicationRecorder):\n"
    )
    print("| case | ours saves/s | library saves/s | ratio | conflicts ours / library |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for case in ("no_cache", "cache"):
        r = result.get(case)
        if not isinstance(r, dict):
            continue
        details = r.get("details", {})
        conflicts = "/".join(
            str(details.get(n, {}).get("conflicts", "?")) for n in ("group", "default")
        )
        print(
            f"| {case} | {r['group']:.1f} | {r['default']:.1f} | {r['ratio']:.2f}x | {conflicts} |"
        )
    print(f"\nraw: {result}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="10,1000,10000,100000",
        help="history lengths, ascending (events of the one instance)",
    )
    parser.add_argument("--samples", type=int, default=200, help="timed commands per size")
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed commands first on the new path (the first is 'cold')",
    )
    parser.add_argument(
        "--old-samples-budget",
        type=int,
        default=100_000,
        help="today's path takes min(samples, max(min, budget ÷ size)) samples",
    )
    parser.add_argument("--old-samples-min", type=int, default=3)
    parser.add_argument(
        "--old-path-max", type=int, default=None, help="skip today's path above this size"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help=",".join(KINDS))
    parser.add_argument("--chunk", type=int, default=500, help="events per save while growing")
    parser.add_argument(
        "--hot-seconds", type=float, default=10.0, help="bench/hot_aggregate.py per run; 0 skips it"
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema")
    args = parser.parse_args()
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")

    db = resolve(os.environ.get("DATABASE_URL"), ROOT / ".darkroom" / "bench-pg")
    print(f"# History bench, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
    print(f"`{' '.join(['python', *sys.argv])}`\n")
    print(
        f"- machine: {os.cpu_count()} cores ({cpu_model()}), load "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, CPU loop "
        f"{machine_speed():.3f} s (≈0.31 s is this box's usual speed)"
    )
    library = metadata.version("eventsourcing")
    print(
        f"- Python {platform.python_version()}, eventsourcing {library}, "
        f"PostgreSQL {postgres_version(db)}; git {git_head()}"
    )
    print(
        f"- new path: snapshots every {sorted(set(SNAPSHOT_INTERVALS.values()))} events, "
        f"aggregate cache {NEW['cache_size']:,} (fast-forward); today's path: no snapshots, "
        "no cache"
    )
    print(
        f"- per size: {args.samples} samples on the new path after {args.warmup} warm-up "
        f"commands; today's path min({args.samples}, max({args.old_samples_min}, "
        f"{args.old_samples_budget:,} ÷ size)) after 1; growth {args.chunk} events per "
        "save, snapshots on; each path on a fresh Studio; latencies in ms; RSS is this process's "
        "(the studio runs in it), cumulative over the run; load is the 1-minute load "
        "average when the row ends (2 cores, shared)\n"
    )

    schema = f"bench_hist_{uuid.uuid4().hex[:6]}"
    create_schema(db, schema)
    verdicts: list[tuple[bool, str]] = []
    started = time.perf_counter()
    try:
        grower = build_studio(db, schema, pool_size=4, snapshots=True, cache_size=0)
        for kind in kinds:
            cls = KINDS[kind]
            print(f"\n## {kind}: {cls.command_label}\n")
            print(HEADER)
            print("| " + " | ".join(["---:"] * (HEADER.count("|") - 1)) + " |", flush=True)
            t0 = time.perf_counter()
            rows, ident = run_kind(db, schema, grower, cls, args, sizes)
            print(
                f"\n{time.perf_counter() - t0:.0f} s for this kind; "
                f"{snapshot_count(db, schema, [ident])} snapshots stored for the instance"
            )
            verdicts.append(verdict(kind, rows))
        grower.close()
        print(f"\nsnapshots ignored by the repository (unusable): {SnapshottingRepository.ignored}")
        print(
            f"CPU loop at the end: {machine_speed():.3f} s; load "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"{time.perf_counter() - started:.0f} s in all"
        )

        first, last = sizes[0], sizes[-1]
        note = (
            ""
            if (first, last) == (10, 100_000)
            else f" (the bar is defined at 100,000 vs 10; here {last:,} vs {first:,})"
        )
        print(
            f"\n## Bar: new path p50 ≤ {BAR_P50}x and p99 ≤ {BAR_P99}x of the smallest size{note}\n"
        )
        for _ok, text in verdicts:
            print(f"- {text}")
        if args.hot_seconds > 0:
            hot_aggregate(db, args.hot_seconds)
    finally:
        if not args.keep:
            drop_schema(db, schema)
        else:
            print(f"schema kept: {schema}")
    if not all(ok for ok, _ in verdicts):
        sys.exit(1)


def git_head() -> str:
    """The commit, and whether the working tree differs from it (others edit alongside)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + (
        " + uncommitted changes to " + ", ".join(line[3:] for line in dirty.splitlines())
        if dirty
        else ""
    )


if __name__ == "__main__":
    main()

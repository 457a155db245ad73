"""Projection catch-up: our batched runner vs the library's ProjectionRunner; gallery latency.

Builds a realistic history through the real domain and application (projects,
shots with reorders, generations with variant churn and stars, tasks through
their lifecycle with credit charges) in a fresh schema, then in one run:

1. catch-up of OUR runner, all views together (projects, gallery, variants,
   shots, tasks, credits + the change log), from position 0 to the head;
2. catch-up of the library's `ProjectionRunner` with a comparable gallery
   projection (one transaction per event, as the library does), over the
   first `--library-events` events of the same log; and the library's runner
   doing our work (our six views and the change log, one transaction per event),
   once with the library's synchronous commits and once with
   `synchronous_commit = off` as our writer commits;
3. gallery page latency (first pages, cursor pages, each filter) in the big
   project (`--generations` generations).

    python bench/projections.py [--generations 100000] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from darkroom.database import Database, create_schema, drop_schema, resolve
from darkroom.eventstore import RECORDER_TOPIC
from domain.catalogue import resolve_default
from domain.credits import CreditLedger
from domain.generation import Generation
from domain.metadata import CommandMeta, command_context
from domain.project import Project
from domain.shot import Shot
from domain.studio import Studio
from domain.task import Task
from projections import all_views, db
from projections.engine.runner import Runner
from projections.engine.writer import Batch, write_batch
from projections.views.gallery import gallery_page

ROOT = Path(__file__).resolve().parent.parent
SAVE_CHUNK = 400  # aggregates per save: one transaction each


def env_for(database: Database, schema: str) -> dict[str, str]:
    return {
        **database.eventsourcing_env(schema, pool_size=4),
        "APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC,
        "CREATE_TABLE": "y",
    }


# -- history ----------------------------------------------------------------------


class History:
    """Writes the bench history through `Studio.save` in chunks of aggregates."""

    def __init__(self, app: Studio, seed: int = 7) -> None:
        self.app = app
        self.rng = random.Random(seed)
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)

    def tick(self) -> datetime:
        self.clock += timedelta(milliseconds=self.rng.randint(1, 40))
        return self.clock

    def save(self, aggregates: list[Any]) -> None:
        with command_context(CommandMeta(actor="system:bench")):
            for start in range(0, len(aggregates), SAVE_CHUNK):
                self.app.save(*aggregates[start : start + SAVE_CHUNK])

    def project(self, owner: str, name: str) -> Project:
        project = Project.start(owner, name)
        self.save([project])
        return project

    def generations(self, project: Project, n: int) -> list[Generation]:
        made = []
        for i in range(n):
            kind = "video" if self.rng.random() < 0.1 else "image"
            tool = self.rng.choice(["image-generation", "travel", "edit", None])
            g = Generation.start(
                project.id,
                kind,
                self.tick(),
                name=f"gen {i}",
                params={"prompt": f"a cat number {i}", "seed": i, "tool_type": tool},
            )
            g.add_variant(
                uuid.uuid4(),
                f"media/{g.id}.png",
                self.tick(),
                thumbnail_url=f"media/{g.id}.thumb.png",
                make_primary=True,
                viewed=True,
            )
            made.append(g)
        self.save(made)
        return made

    def churn(self, generations: list[Generation], share: float) -> None:
        """Variants added, made primary, deleted; stars; renames."""
        touched = []
        for g in self.rng.sample(generations, int(len(generations) * share)):
            upscale = g.add_variant(
                uuid.uuid4(),
                f"media/{g.id}.up.png",
                self.tick(),
                variant_type="upscaled",
                make_primary=True,
            )
            edit = g.add_variant(
                uuid.uuid4(), f"media/{g.id}.edit.png", self.tick(), variant_type="magic_edit"
            )
            g.make_primary(edit.id)
            g.delete_variant(upscale.id)
            if self.rng.random() < 0.5:
                g.star(True)
            touched.append(g)
        self.save(touched)

    def shots(
        self, project: Project, generations: list[Generation], n: int, members: int
    ) -> list[Shot]:
        made = []
        for i in range(n):
            shot = Shot.start(project.id, f"shot {i}", project.take_shot_position())
            for g in self.rng.sample(generations, members):
                shot.add(uuid.uuid4(), g.id, g.media_type, with_position=self.rng.random() < 0.8)
            made.append(shot)
        self.save([project, *made])
        for _ in range(2):
            for shot in made:
                order = [m.generation_id for m in shot.members]
                self.rng.shuffle(order)
                shot.reorder(order)
            self.save(made)
        return made

    def tasks(self, project: Project, owner: str, n: int) -> None:
        ledger = CreditLedger.open(owner)
        ledger.grant(1_000_000, "bench", self.tick())
        kind = resolve_default("image_generation")
        tasks = [
            Task.create(
                project_id=project.id,
                owner_id=owner,
                task_type=kind,
                params={"prompt": f"task {i}", "resolution": "1024x1024"},
                at=self.tick(),
            )
            for i in range(n)
        ]
        self.save([ledger, *tasks])
        for t in tasks:
            t.claim("worker-1", self.tick())
        self.save(tasks)
        for step in (1, 2):
            for t in tasks:
                t.report_progress(step, 2)
            self.save(tasks)
        for t in tasks:
            if self.rng.random() < 0.1:
                t.fail("out of memory", self.tick())
            else:
                t.complete(f"media/{t.id}.png", self.tick())
                t.record_cost("0.039")
                ledger.charge_task(t.id, "0.039", self.tick())
        self.save([*tasks, ledger])


def build_history(app: Studio, generations: int, projects: int, tasks: int) -> int:
    history = History(app)
    big = history.project("owner-big", "The big one")
    made = history.generations(big, generations)
    history.churn(made, 0.10)
    history.shots(big, made, 100, 20)
    history.tasks(big, "owner-big", tasks // 2)
    for p in range(projects):
        owner = f"owner-{p}"
        project = history.project(owner, f"project {p}")
        small = history.generations(project, 200)
        history.churn(small, 0.3)
        history.shots(project, small, 5, 10)
        history.tasks(project, owner, tasks // (2 * projects))
    return int(app.recorder.head_position())  # type: ignore[attr-defined]


def settle(app: Studio, database: Database, schema: str) -> None:
    """Vacuum, analyse and checkpoint after writing the history, as a database that has
    been running is: otherwise autovacuum (309k fresh inserts) and the checkpointer
    (a gigabyte of WAL) run inside whichever timed section they happen to hit."""
    with psycopg.connect(database.conninfo, autocommit=True) as conn:
        table = app.recorder.events_table_name  # type: ignore[attr-defined]
        conn.execute(SQL("VACUUM (ANALYZE) {}.{}").format(Identifier(schema), Identifier(table)))
        conn.execute("CHECKPOINT")


# -- the library's runner, for comparison -------------------------------------------


class LibraryGalleryView(PostgresTrackingRecorder):
    """A gallery table kept by the library's way: one transaction per event."""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.table = f"{datastore.schema}.lib_gallery"
        self.sql_create_statements.append(
            SQL(
                f"CREATE TABLE IF NOT EXISTS {self.table} (id uuid PRIMARY KEY, project_id uuid, "
                "media_type text, location text, thumbnail_url text, variant_count int, "
                "starred boolean, deleted boolean, created_at timestamptz)"
            ).format()
        )

    def write(self, statement: str | None, params: tuple[Any, ...], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            if statement is not None:
                curs.execute(statement.format(table=self.table).encode(), params)
            self._insert_tracking(curs, tracking)


class LibraryGallery(Projection[LibraryGalleryView]):
    name = "libgallery"

    def process_event(self, event: Any, tracking: Tracking) -> None:
        statement, params = gallery_statement(event)
        self.view.write(statement, params, tracking)
        if tracking.notification_id >= LIBRARY_STOP[0]:
            LIBRARY_DONE.set()


LIBRARY_STOP = [0]
LIBRARY_DONE = threading.Event()


def gallery_statement(event: Any) -> tuple[str | None, tuple[Any, ...]]:
    ident = event.originator_id
    if isinstance(event, Generation.Created):
        return (
            "INSERT INTO {table} VALUES (%s, %s, %s, NULL, NULL, 0, false, false, %s)",
            (ident, event.project_id, event.media_type, event.created_at),
        )
    if isinstance(event, Generation.VariantAdded):
        return (
            "UPDATE {table} SET variant_count = variant_count + 1, "
            "location = CASE WHEN %s THEN %s ELSE location END, "
            "thumbnail_url = CASE WHEN %s THEN %s ELSE thumbnail_url END WHERE id = %s",
            (event.make_primary, event.location, event.make_primary, event.thumbnail_url, ident),
        )
    if isinstance(event, Generation.VariantDeleted):
        return "UPDATE {table} SET variant_count = variant_count - 1 WHERE id = %s", (ident,)
    if isinstance(event, Generation.Starred):
        return "UPDATE {table} SET starred = %s WHERE id = %s", (event.starred, ident)
    if isinstance(event, Generation.Deleted):
        return "UPDATE {table} SET deleted = true WHERE id = %s", (ident,)
    return None, ()


def run_library(database: Database, schema: str, stop: int) -> float:
    """Seconds the library's runner takes to go from where it stopped up to `stop`."""
    env = {**env_for(database, schema), "CREATE_TABLE": "y"}
    return timed_library_run(LibraryGallery, LibraryGalleryView, env, stop)


def timed_library_run(
    projection: type[Any], view: type[Any], env: dict[str, str], stop: int
) -> float:
    """Seconds the library's `ProjectionRunner` takes from where `projection` stopped
    (its tracking table) up to position `stop`."""
    LIBRARY_STOP[0] = stop
    LIBRARY_DONE.clear()
    started = time.perf_counter()
    with ProjectionRunner(
        application_class=Studio, projection_class=projection, view_class=view, env=env
    ) as runner:
        while not LIBRARY_DONE.wait(0.2):
            runner.run_forever(timeout=0.01)
        elapsed = time.perf_counter() - started
    return elapsed


# -- the library's runner doing our work: the six views and the change log -----------

LIB_TARGET: list[Any] = []  # (app, conninfo, schema) the projection folds with and writes to
LIB_RUNNERS: list[Runner] = []


class LibraryViewsRecorder(PostgresTrackingRecorder):
    """Our views' rows, change rows and tracking, written the library's way: one
    transaction per event (the library's tracking row in the same transaction)."""

    asynchronous = False  # the library's default: each commit waits for its WAL flush

    def write(self, batch: Batch, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("SET LOCAL search_path TO {}").format(Identifier(self.datastore.schema))
            )
            if self.asynchronous:
                curs.execute("SET LOCAL synchronous_commit = off")
            write_batch(curs, batch)
            self._insert_tracking(curs, tracking)


class LibraryViews(Projection[LibraryViewsRecorder]):
    """The same views as ours, fed one event at a time by the library's runner."""

    name = "libviews"

    def __init__(self, view: LibraryViewsRecorder) -> None:
        super().__init__(view=view)
        app, conninfo, schema = LIB_TARGET
        views = all_views()
        self.runner = Runner(
            app,
            conninfo,
            schema,
            views,
            managed=False,
            versions={v.name: 1 for v in views},
            changelog_enabled=True,
            threaded=False,
        )
        self.runner.open()
        LIB_RUNNERS.append(self.runner)

    def process_event(self, event: Any, tracking: Tracking) -> None:
        topic = getattr(type(event), "TOPIC", None) or get_topic(type(event))
        self.runner.batcher.process_event(event, tracking.notification_id, topic)
        self.view.write(self.runner.batcher.collect(self.runner.sinks), tracking)
        for view in self.runner.views:
            view.flushed()
        if tracking.notification_id >= LIBRARY_STOP[0]:
            LIBRARY_DONE.set()


class LibraryViewsAsyncRecorder(LibraryViewsRecorder):
    """As above with `synchronous_commit = off`, as our writer commits: the same
    durability on both sides, so the ratio measures the runner, not the disk."""

    asynchronous = True


class LibraryViewsAsync(LibraryViews):
    name = "libviewsasync"


def run_library_views(
    app: Studio, database: Database, schema: str, stop: int, *, asynchronous: bool = False
) -> float:
    """Seconds the library's runner with our views takes from where it stopped to `stop`."""
    projection, recorder, target = (
        (LibraryViewsAsync, LibraryViewsAsyncRecorder, f"{schema}_liba")
        if asynchronous
        else (LibraryViews, LibraryViewsRecorder, f"{schema}_lib")
    )
    LIB_TARGET[:] = [app, database.conninfo, target]
    env = {**env_for(database, schema), f"{projection.name.upper()}_POSTGRES_SCHEMA": target}
    elapsed = timed_library_run(projection, recorder, env, stop)
    for ours in LIB_RUNNERS:
        ours.close()
    LIB_RUNNERS.clear()
    return elapsed


# -- ours ------------------------------------------------------------------------


def run_ours(app: Studio, database: Database, schema: str) -> tuple[int, float]:
    runner = Runner(app, database.conninfo, schema, all_views())
    with runner:
        runner.open()
        started, cpu = time.perf_counter(), time.process_time()
        position = runner.catch_up()
        elapsed = time.perf_counter() - started
        CPU_US[0] = (time.process_time() - cpu) / max(1, position) * 1e6
        print(
            f"  batches={runner.batches} aggregate loads={runner.cache.loads} "
            f"runner process CPU {CPU_US[0]:.1f} µs/event, load {os.getloadavg()[0]:.1f}"
        )
    return position, elapsed


CPU_US = [0.0]


def machine_speed() -> float:
    """Seconds a fixed CPU loop takes: this shared box's speed drifts by half, and
    every rate here (ours and the library's) moves with it. About 0.31 s is the
    box at its usual speed; 0.45 s and more is a slow spell."""
    started = time.perf_counter()
    sum(range(30_000_000))
    return time.perf_counter() - started


def gallery_latency(
    database: Database, schema: str, project_id: str, shot_ids: list[str], samples: int
) -> tuple[float, float, float]:
    conn = db.connect(database.conninfo, schema)
    rng = random.Random(3)
    filters: list[dict[str, Any]] = [
        {},
        {"starred": True},
        {"media_type": "video"},
        {"tool_type": "travel"},
        {"in_no_shot": True},
    ]
    timings = []
    for i in range(samples + 50):
        kw: dict[str, Any] = dict(rng.choice(filters))
        if rng.random() < 0.25 and shot_ids:
            kw = (
                {"in_shot": rng.choice(shot_ids)}
                if rng.random() < 0.5
                else {"unpositioned_in_shot": rng.choice(shot_ids)}
            )
        started = time.perf_counter()
        page = gallery_page(conn, project_id, limit=50, **kw)
        if page["next_cursor"] and rng.random() < 0.5:
            page = gallery_page(conn, project_id, limit=50, cursor=page["next_cursor"], **kw)
        if i >= 50:  # warm-up excluded
            timings.append((time.perf_counter() - started) * 1000)
    conn.close()
    timings.sort()
    return (statistics.median(timings), timings[int(len(timings) * 0.99) - 1], max(timings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generations", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=8_000)
    parser.add_argument("--library-events", type=int, default=20_000)
    parser.add_argument("--library-views-events", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the schema")
    args = parser.parse_args()

    database = resolve(os.environ.get("DATABASE_URL"), ROOT / ".darkroom" / "bench-pg")
    schema = f"bench_proj_{uuid.uuid4().hex[:6]}"
    create_schema(database, schema)
    try:
        app = Studio(env=env_for(database, schema))
        started = time.perf_counter()
        head = build_history(app, args.generations, args.projects, args.tasks)
        print(f"history: {head:,} events in {time.perf_counter() - started:.1f} s")
        settle(app, database, schema)

        # The library's sample is taken half before and half after ours, so a
        # change in the shared machine's load weighs on both alike.
        sample = min(args.library_events, head)
        same_work = min(args.library_views_events, head)
        create_schema(database, f"{schema}_lib")
        library_seconds = run_library(database, schema, sample // 2)
        create_schema(database, f"{schema}_liba")
        views_seconds = run_library_views(app, database, schema, same_work // 2)
        async_seconds = run_library_views(app, database, schema, same_work // 2, asynchronous=True)
        load_before = os.getloadavg()[0]
        speed = machine_speed()
        position, elapsed = run_ours(app, database, schema)
        speed = (speed + machine_speed()) / 2
        print(f"machine speed: the fixed CPU loop took {speed:.3f} s around our catch-up")
        ours = position / elapsed
        print(f"ours: {position:,} events in {elapsed:.2f} s = {ours:,.0f} events/s")

        library_seconds += run_library(database, schema, sample)
        views_seconds += run_library_views(app, database, schema, same_work)
        async_seconds += run_library_views(app, database, schema, same_work, asynchronous=True)
        library = sample / library_seconds
        library_views = same_work / views_seconds
        library_async = same_work / async_seconds
        print(
            f"library ProjectionRunner, one-table gallery: {library:,.0f} events/s "
            f"(first {sample:,} events, half before ours, half after); "
            f"ratio {ours / library:.1f}x"
        )
        print(
            f"library ProjectionRunner, our six views + change log: {library_views:,.0f} "
            f"events/s (first {same_work:,} events); ratio {ours / library_views:.1f}x"
        )
        print(
            f"  the same with synchronous_commit = off, as ours: {library_async:,.0f} "
            f"events/s; ratio {ours / library_async:.1f}x"
        )

        conn = db.connect(database.conninfo, schema)
        big = conn.execute(
            "SELECT project_id, count(*) AS n FROM gallery GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        assert big is not None
        shot_ids = [
            str(r["id"])
            for r in conn.execute(
                "SELECT id FROM shots WHERE project_id = %s", (big["project_id"],)
            ).fetchall()
        ]
        conn.execute("ANALYZE")
        conn.close()
        p50, p99, worst = gallery_latency(
            database, schema, str(big["project_id"]), shot_ids, args.samples
        )
        print(
            f"gallery page ({big['n']:,} generations): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
            f"max {worst:.2f} ms"
        )
        if args.write_docs:
            write_docs(
                args,
                head,
                position,
                elapsed,
                ours,
                library,
                library_views,
                library_async,
                big["n"],
                p50,
                p99,
                load_before,
                speed,
            )
        app.close()
    finally:
        if not args.keep:
            drop_schema(database, schema)
            drop_schema(database, f"{schema}_lib")
            drop_schema(database, f"{schema}_liba")


def write_docs(
    args: argparse.Namespace,
    head: int,
    position: int,
    elapsed: float,
    ours: float,
    library: float,
    library_views: float,
    library_async: float,
    generations: int,
    p50: float,
    p99: float,
    load: float,
    speed: float,
) -> None:
    path = ROOT / "docs" / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    command = (
        f"python bench/projections.py --generations {args.generations} "
        f"--projects {args.projects} --tasks {args.tasks} "
        f"--library-events {args.library_events} "
        f"--library-views-events {args.library_views_events} --write-docs"
    )
    sample = min(args.library_events, head)
    same_work = min(args.library_views_events, head)
    rows = [
        ("history written through the domain (`Studio.save`)", f"{head:,} events", "≥ 200,000"),
        (
            "our runner, all six views + change log, catch-up 0 → head",
            f"{ours:,.0f} events/s ({position:,} in {elapsed:.1f} s)",
            "≥ 20,000/s",
        ),
        (
            f"library `ProjectionRunner`, a one-table gallery projection (9 columns, no "
            f"change log), one tx per event (first {sample:,} events: half before ours, "
            "half after)",
            f"{library:,.0f} events/s",
            "—",
        ),
        (
            "ratio to the one-table library projection (less work than ours: one table, "
            "no change log)",
            f"{ours / library:.1f} times",
            "—",
        ),
        (
            f"library `ProjectionRunner` running our six views + change log, one tx per "
            f"event (first {same_work:,} events: half before ours, half after)",
            f"{library_views:,.0f} events/s",
            "—",
        ),
        (
            "ratio to the library runner doing the same work",
            f"{ours / library_views:.1f} times",
            "≥ 15 times",
        ),
        (
            "the same library run with `synchronous_commit = off` (as our writer commits)",
            f"{library_async:,.0f} events/s, ratio {ours / library_async:.1f} times",
            "—",
        ),
        (
            "our runner process's CPU (main + reader threads; the writer process not included)",
            f"{CPU_US[0]:.1f} µs/event",
            "—",
        ),
        ("machine load average when our catch-up started (2 cores, shared)", f"{load:.1f}", "—"),
        (
            "machine speed: a fixed CPU loop (`sum(range(30_000_000))`) around our catch-up",
            f"{speed:.3f} s (≈ 0.31 s usual, ≥ 0.45 s slow spell)",
            "—",
        ),
        (
            f"gallery page (50 rows, filters and cursor pages mixed), {generations:,} "
            "generations in one project",
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
            "p99 ≤ 20 ms",
        ),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    section = (
        f"## Projections (bench/projections.py)\n\n`{command}` on "
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()} with {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, embedded PostgreSQL (pgserver), "
        "same process and server.\n\n| measure | result | target |\n"
        f"| --- | --- | --- |\n{table}\n\n"
    )
    marker = "## Projections (bench/projections.py)"
    if marker in text:
        before, _, rest = text.partition(marker)
        after = rest.split("\n## ", 1)
        text = before + section + ("## " + after[1] if len(after) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    main()

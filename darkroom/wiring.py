"""Composition root: build the studio and its infrastructure from settings."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from darkroom.database import Database, create_schema, resolve
from darkroom.eventstore import RECORDER_TOPIC
from darkroom.housekeeping import SnapshotPruner
from darkroom.pulse import PULSE_TOPIC
from darkroom.settings import DEFAULT_AGGREGATE_CACHE, Settings, hub_settings
from domain.studio import Studio
from inference import metrics as _dispatcher_metrics  # noqa: F401  (on every role's /metrics)
from projections.changelog import RETENTION

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from realtime.config import EdgeConfig
    from realtime.hub import HubSettings


def studio_env(
    db: Database,
    schema: str = "public",
    pool_size: int = 8,
    *,
    snapshots: bool = True,
    cache_size: int = DEFAULT_AGGREGATE_CACHE,
) -> dict[str, str]:
    """`snapshots=False, cache_size=0` is the old path: every load replays the stream."""
    return {
        **db.eventsourcing_env(schema, pool_size),
        "APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC,
        "CREATE_TABLE": "y",
        "PULSE_TOPIC": PULSE_TOPIC,
        "IS_SNAPSHOTTING_ENABLED": "y" if snapshots else "n",
        "AGGREGATE_CACHE_MAXSIZE": str(cache_size) if cache_size > 0 else "",
    }


def build_studio(
    db: Database,
    schema: str = "public",
    pool_size: int = 8,
    welcome_credits: float = 10.0,
    *,
    snapshots: bool = True,
    cache_size: int = DEFAULT_AGGREGATE_CACHE,
) -> Studio:
    studio = with_pruning(
        Studio(env=studio_env(db, schema, pool_size, snapshots=snapshots, cache_size=cache_size))
    )
    studio.welcome_credits = Decimal(str(welcome_credits))
    return studio


def with_pruning(studio: Studio) -> Studio:
    """The studio's snapshot writer deletes the snapshots loads no longer need."""
    if studio.snapshot_writer is not None and studio.snapshots is not None:
        studio.snapshot_writer.prune = SnapshotPruner(studio.snapshots.recorder)
    return studio


@asynccontextmanager
async def projections_in_process(
    app: Starlette, retention: timedelta | None = RETENTION
) -> AsyncIterator[None]:
    """Keeps every view current from inside the serving process (one machine); a runner
    elsewhere holding the views' locks makes this one a standby. `retention`: of the
    change log (`DARKROOM_CHANGELOG_RETENTION_DAYS`)."""
    import threading

    from starlette.concurrency import run_in_threadpool

    from projections import all_views
    from projections.engine.runner import Runner
    from projections.reachability import outage_now, wait_for_database

    config = app.state.config
    stopping = threading.Event()

    def fresh() -> Runner:
        return Runner(
            app.state.studio, config.conninfo, config.schema, all_views(), retention=retention
        )

    current = [fresh()]

    def run() -> None:
        delay = 1.0
        while not stopping.is_set():
            runner = current[0]
            started = time.monotonic()
            try:
                runner.run_forever()
                return
            except BaseException:
                if time.monotonic() - started > 300:
                    delay = 1.0  # it had been running well: not a crash loop
                if stopping.is_set():
                    return
                if outage_now(config.conninfo):  # the database went away, not the runner
                    runner.close()
                    current[0] = fresh()
                    current[0].start_writer()  # spawned while waiting, not after
                    wait_for_database(config.conninfo, stopping)
                    continue
                # A fresh runner rebuilds its state from the committed views, so
                # nothing of the failed batch survives (as `projections run` does).
                logging.getLogger("darkroom.projections").exception(
                    "runner stopped; a fresh one starts in %.0f s", delay
                )
            runner.close()
            if stopping.wait(delay):
                return
            delay = min(delay * 2, 30.0)
            current[0] = fresh()

    # The views' tables exist before the first request is served.
    await run_in_threadpool(current[0].open)
    thread = threading.Thread(target=run, name="projections", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        current[0].stop()
        thread.join(timeout=10)
        if thread.is_alive():
            # Stuck waiting for its writer: stopping the writer frees it, and keeps
            # two threads from reading the writer's pipe at once.
            current[0].kill_writer()
            thread.join(timeout=5)
        current[0].close()


@asynccontextmanager
async def database_watch(app: Starlette) -> AsyncIterator[None]:
    """While PostgreSQL is down every pool of the edge (the event store's, the views',
    the hub's) refuses at once (503 `database_unavailable`), and is whole again within
    0.2 s of its return (projections/reachability.py)."""
    from projections.reachability import watch_for

    watch = watch_for(app.state.config.conninfo)
    studio = app.state.studio
    for holder in (
        studio.recorder,
        getattr(studio.snapshots, "recorder", None),
        getattr(app.state, "views", None),
        getattr(app.state, "hub", None),
    ):
        pool = getattr(getattr(holder, "datastore", holder), "pool", None)
        if pool is not None:
            watch.guard(pool)
    app.state.database_watch = watch
    yield


@asynccontextmanager
async def views_prepared(app: Starlette) -> AsyncIterator[None]:
    """For a process without the projections role: the views' tables exist before the
    first request (a standby's `open`), and nothing folds nor takes a view's lock."""
    from starlette.concurrency import run_in_threadpool

    from projections import all_views
    from projections.engine.runner import Runner

    config = app.state.config
    runner = Runner(app.state.studio, config.conninfo, config.schema, all_views())
    try:
        await run_in_threadpool(runner.open)
    finally:
        await run_in_threadpool(runner.close)
    yield


def edge_config(settings: Settings) -> EdgeConfig:
    """The edge of the roles in `settings.roles` (darkroom/roles.py): `/ws` and its hub
    for `hub`, the runner for `projections`, the HTTP routes and the sweeper for `api`."""
    from darkroom.roles import API, HUB, PROJECTIONS, parse_roles
    from realtime.config import EdgeConfig

    roles = parse_roles(settings.roles)
    db = resolve(settings.database_url, settings.pg_dir)
    create_schema(db, settings.db_schema)
    retention = timedelta(days=settings.changelog_retention_days)
    lifespans: list[Any] = [
        partial(projections_in_process, retention=retention)
        if PROJECTIONS in roles
        else views_prepared
    ]
    hub = hub_settings(settings)
    if HUB in roles:
        lifespans.append(_hub_lifespan(hub))
    lifespans.append(database_watch)  # last: every pool exists by then
    return EdgeConfig(
        conninfo=db.conninfo,
        schema=settings.db_schema,
        build_studio=lambda: build_studio(
            db,
            settings.db_schema,
            settings.pool_size,
            settings.welcome_credits,
            snapshots=settings.snapshots,
            cache_size=settings.aggregate_cache,
        ),
        jwt_secret=settings.jwt_secret,
        service_key=settings.service_key,
        media_dir=settings.media_dir,
        redis_url=settings.redis_url,
        read_timeout_s=settings.read_timeout_s,
        task_rate_limit=settings.task_rate_limit,
        worker_timeout_s=settings.worker_timeout_s,
        sweep_interval_s=settings.sweep_interval_s if API in roles else 0,
        jwt_max_lifetime_s=settings.jwt_max_lifetime_s,
        jwt_sub_any=settings.jwt_sub_any,
        upload_quota_bytes=settings.upload_quota_bytes,
        session_consistency=settings.session_consistency,
        ready_max_lag=settings.ready_max_lag,
        serve_api=API in roles,
        **media_settings(settings),
        extra={
            "routes": _hub_routes() if HUB in roles else [],
            "lifespans": lifespans,
            "hub": hub,
        },
    )


def media_settings(settings: Settings) -> dict[str, Any]:
    """The edge's upload and media-URL knobs; with an S3 bucket (`DARKROOM_S3_BUCKET`) task
    outputs get the bucket's presigned GET URLs, living as long as the signed local ones."""
    inference = settings.inference
    store_url = None
    if inference.s3_bucket:
        from inference.media import S3MediaStore

        store_url = S3MediaStore(
            inference.s3_bucket,
            inference.s3_endpoint,
            region_name=inference.s3_region,
            public_base_url=inference.media_public_url,
            url_expiry=settings.media_url_ttl_s,
        ).url_for
    return {
        "upload_max_pixels": settings.upload_max_pixels,
        "media_secret": settings.media_secret,
        "media_url_ttl_s": settings.media_url_ttl_s,
        "media_store_url": store_url,
    }


def _hub_routes() -> list[Any]:
    from realtime.ws import hub_routes

    return hub_routes()


def _hub_lifespan(settings: HubSettings) -> Any:
    from realtime.ws import hub_lifespan

    return hub_lifespan(settings)


def build_app(settings: Settings) -> Starlette:
    from realtime.app import create_app

    return create_app(edge_config(settings))

"""Composition root of inference: the dispatcher wired to the studio, the claim queue,
the media store and a Ray cluster.

- `ClaimQueueCandidates`: the dispatcher's `CandidateSource`, a query over the task
  board's claim queue (`projections.views.tasks`), which `inference` may not import.
- `start_inference(settings)`: Ray (local, or `RAY_ADDRESS`), the actor pool and
  a running dispatcher; `InferenceRuntime.close()` undoes it all.
- `inference_in_process`: the same as a lifespan of the serving app, and
  `build_serving_app(settings)`: the edge with it (`DARKROOM_INFERENCE=local`, the
  default; `ray` joins `RAY_ADDRESS`; `off`).
- `run_worker(settings, address)`: `darkroom worker --ray-address ...`, blocking.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from darkroom.database import Database, create_schema, resolve
from darkroom.roles import DISPATCHER, parse_roles
from darkroom.settings import Settings, dispatcher_config
from darkroom.settings_sections import InferenceSettings
from darkroom.wiring import studio_env, with_pruning
from domain.studio import Studio

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from inference.actors import ActorPool, ActorSpec
    from inference.dispatcher import Dispatcher, DispatcherConfig
    from inference.media import MediaStore
    from inference.ports import Candidate

log = logging.getLogger("darkroom.inference")

OFF, LOCAL, CLUSTER = "off", "local", "ray"


def parse_actors(text: str | None) -> list[ActorSpec]:
    """`text_to_image+image_to_image:1,upscale:1,image_to_video:2` → actor specs;
    empty → one actor per model (`inference.actors.default_specs`)."""
    from inference.actors import ActorSpec, default_specs

    if not text:
        return default_specs()
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        models, _, count = item.partition(":")
        specs.append(
            ActorSpec(
                tuple(m for m in models.split("+") if m and m != "media"), count=int(count or 1)
            )
        )
    return specs


class ClaimQueueCandidates:
    """Queued tasks with complete dependencies, oldest first, of the given run and task
    types: the claim queue joined to the task board for the task type
    (`projections.views.tasks.claimable`). One connection, used by the dispatcher's
    loop thread only; reconnects after a failure."""

    def __init__(self, conninfo: str, schema: str) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self._conn: psycopg.Connection[Any] | None = None

    def candidates(
        self, run_types: Sequence[str], task_types: Collection[str], limit: int
    ) -> list[Candidate]:
        from inference.ports import Candidate
        from projections.views.tasks import claimable

        try:
            rows = claimable(self._connection(), run_types, task_types, limit)
        except psycopg.Error:
            self.close()
            raise
        return [Candidate(task_id, run_type) for task_id, run_type in rows]

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.conninfo, autocommit=True, options=f"-c search_path={self.schema}"
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def private_claim_queue(studio: Studio, db: Database, schema: str) -> Any:
    """A task board projection (with the claim queue) for this schema alone, opened and
    not yet running (`run_forever` on a thread; `stop`, `close`). For benchmarks and tests.

    Unmanaged, because a managed runner's advisory locks are named after the view only:
    it would wait as a standby behind a runner of another schema in the same database.
    The unversioned SQL views the claim query reads are pointed here instead.
    """
    from projections import db as views
    from projections.engine.runner import Runner
    from projections.views.tasks import TasksView

    runner = Runner(
        studio,
        db.conninfo,
        schema,
        [TasksView()],
        managed=False,
        versions={"tasks": 1},
        changelog_enabled=False,
    )
    runner.open()
    with views.connect(db.conninfo, schema) as conn:
        views.point_views(conn, TasksView.tables, 1)
    return runner


def dispatcher_studio(db: Database, schema: str, pool_size: int = 4) -> Studio:
    """A studio for a dispatcher process. Its aggregate cache fast-forwards from the store
    on every read (safe beside other writers) so a worker's long history is not replayed
    on every claim and heartbeat."""
    env = {**studio_env(db, schema, pool_size), "AGGREGATE_CACHE_MAXSIZE": "20000"}
    return with_pruning(Studio(env=env))


def media_store(settings: Settings, inference: InferenceSettings) -> MediaStore:
    from inference.media import LocalMediaStore, S3MediaStore

    if inference.s3_bucket:
        return S3MediaStore(
            inference.s3_bucket,
            inference.s3_endpoint,
            region_name=inference.s3_region,
            public_base_url=inference.media_public_url,
        )
    return LocalMediaStore(settings.media_dir)


def tiny_root(settings: Settings) -> Path:
    return (settings.data_dir / "models" / "tiny").resolve()


def pool_config(settings: Settings, inference: InferenceSettings) -> Any:
    from inference.actors import PoolConfig

    return PoolConfig(
        specs=parse_actors(inference.actors),
        models=dict(inference.models),
        tiny_root=None if inference.models else str(tiny_root(settings)),
        use_gpu=inference.use_gpu,
    )


def start_ray_for(address: str | None, inference: InferenceSettings) -> bool:
    """Ray for this process; True when it was started (or joined) here, just now."""
    import ray

    from inference.ray_runtime import start_ray

    if ray.is_initialized():
        return False
    start_ray(
        address,
        num_cpus=inference.num_cpus,
        object_store_memory=inference.object_store_mb * 1024**2,
    )
    return True


@dataclass
class InferenceRuntime:
    """A running dispatcher and what it owns."""

    dispatcher: Dispatcher
    pool: ActorPool
    studio: Studio
    candidates: ClaimQueueCandidates
    owns_ray: bool
    closers: list[Any] = field(default_factory=list)

    def close(self, drain: float = 5.0) -> None:
        from inference.ray_runtime import stop_ray

        self.dispatcher.stop(drain)
        self.pool.shutdown()
        self.candidates.close()
        self.studio.close()
        if self.owns_ray:
            stop_ray()


def build_dispatcher(
    studio: Studio,
    db: Database,
    schema: str,
    media: MediaStore,
    pool: ActorPool,
    *,
    worker_id: str | None = None,
    config: DispatcherConfig | None = None,
) -> tuple[Dispatcher, ClaimQueueCandidates]:
    """A dispatcher (not started) over a started pool."""
    from inference.dispatcher import Dispatcher
    from inference.ports import studio_outputs

    candidates = ClaimQueueCandidates(db.conninfo, schema)
    dispatcher = Dispatcher(
        studio, candidates, pool, media, studio_outputs(studio), worker_id=worker_id, config=config
    )
    return dispatcher, candidates


def start_inference(settings: Settings, ray_address: str | None = None) -> InferenceRuntime:
    """Ray (started here unless an address is given or Ray is already up), the actors and a
    running dispatcher. Actors join the pool as their models finish loading."""

    from inference.actors import ActorPool

    inference = settings.inference
    address = ray_address or settings.ray_address
    started_here = start_ray_for(address, inference)
    db = resolve(settings.database_url, settings.pg_dir)
    create_schema(db, settings.db_schema)
    studio = dispatcher_studio(db, settings.db_schema)
    pool = ActorPool(pool_config(settings, inference))
    pool.start()
    config = dispatcher_config(settings)
    dispatcher, candidates = build_dispatcher(
        studio,
        db,
        settings.db_schema,
        media_store(settings, inference),
        pool,
        worker_id=inference.worker_id,
        config=config,
    )
    dispatcher.start()
    return InferenceRuntime(
        dispatcher, pool, studio, candidates, owns_ray=started_here and address is None
    )


@asynccontextmanager
async def inference_in_process(app: Starlette, settings: Settings) -> AsyncIterator[None]:
    """Lifespan for the serving app: local inference unless `DARKROOM_INFERENCE=off`."""
    from starlette.concurrency import run_in_threadpool

    inference = settings.inference
    if inference.mode == OFF:
        yield
        return
    address = settings.ray_address if inference.mode == CLUSTER else None
    # On the event loop's (main) thread: Ray must not take over uvicorn's SIGTERM handler.
    started_here = start_ray_for(address, inference)
    runtime = await run_in_threadpool(start_inference, settings, address)
    runtime.owns_ray = started_here and address is None
    app.state.inference = runtime
    try:
        yield
    finally:
        await run_in_threadpool(runtime.close)


def build_serving_app(settings: Settings) -> Starlette:
    """`darkroom serve`'s app: the edge of `settings.roles` and, with the `dispatcher`
    role unless `DARKROOM_INFERENCE=off`, Ray with the dispatcher (`inference_in_process`)."""
    from darkroom.wiring import edge_config
    from realtime.app import create_app

    config = edge_config(settings)
    if DISPATCHER in parse_roles(settings.roles):
        lifespans = list(config.extra.get("lifespans") or [])  # type: ignore[call-overload]
        config.extra["lifespans"] = [*lifespans, partial(inference_in_process, settings=settings)]
    return create_app(config)


def run_worker(settings: Settings, ray_address: str | None) -> None:
    """Run a dispatcher until SIGINT/SIGTERM (`darkroom worker`)."""
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    runtime = start_inference(settings, ray_address)
    log.info("dispatcher %s running", runtime.dispatcher.worker_id)
    try:
        while not stopping.wait(1.0):
            if not runtime.dispatcher.healthy:
                raise RuntimeError("the dispatcher stopped") from runtime.dispatcher.error
    finally:
        runtime.close()

"""The Starlette application factory: resources live in the lifespan, nothing at import.

`create_app(config, extra_routes=...)` is the place where routes the HTTP API
does not own are mounted (the websocket hub's `/ws`); `config.extra["routes"]`
and `config.extra["lifespans"]` do the same from the composition root.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from realtime.api import ENDPOINTS
from realtime.api import media as media_api
from realtime.api import workers as workers_api
from realtime.api.base import Json, route
from realtime.api.limits import RateLimiter
from realtime.api.reads import Views
from realtime.api.routing import Routes, read_only, resources
from realtime.auth import Authenticator
from realtime.config import EdgeConfig
from realtime.console import mount as console_mount
from realtime.errors import exception_handlers
from realtime.health import live, ready
from realtime.metrics import metrics
from realtime.observe import Observed
from realtime.openapi import openapi_document
from realtime.sessions import SessionPositions

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[Any]]


async def health(request: Request) -> Response:
    studio = request.app.state.studio
    head = await run_in_threadpool(studio.head_position)
    return Json({"status": "ok", "head_position": head})


async def openapi(request: Request) -> Response:
    return Json(request.app.state.openapi)


def create_app(
    config: EdgeConfig,
    extra_routes: Sequence[BaseRoute] = (),
    extra_lifespans: Sequence[Lifespan] = (),
) -> Starlette:
    """The HTTP API. `extra_routes` (e.g. the websocket hub's `/ws`) are mounted before the
    API routes; `extra_lifespans` are entered after the edge's own resources exist.

    HTTP routes are grouped by path (`resources()`): each path answers `OPTIONS` and a
    wrong method with 405 and its full `Allow`, and literal segments win over `{id}`."""
    lifespans = [*extra_lifespans, *_extra(config, "lifespans")]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.config = config
        app.state.media_urls = media_api.MediaUrls(
            media_api.media_secret(config.media_secret, config.jwt_secret),
            config.media_url_ttl_s,
            store_url=config.media_store_url,
        )
        app.state.studio = await run_in_threadpool(config.build_studio)
        app.state.sessions = SessionPositions(
            config.schema, config.redis_url, enabled=config.session_consistency
        )
        app.state.auth = Authenticator(
            app.state.studio,
            config.jwt_secret,
            config.service_key,
            max_lifetime_s=config.jwt_max_lifetime_s,
            any_subject=config.jwt_sub_any,
            sessions=app.state.sessions,
        )
        app.state.rate_limiter = RateLimiter(config.task_rate_limit, config.task_rate_window_s)
        app.state.openapi = openapi_document(ENDPOINTS)
        app.state.views = Views(config, app.state.studio.head_position)
        # Blocking calls share a few threads, about as many as the store's pool has
        # connections: a burst waits on the event loop instead of in threads that would
        # only queue for a connection while holding the GIL.
        app.state.command_limiter = anyio.CapacityLimiter(config.command_threads)
        # Where `Call.run` runs them: one hand-off each way (realtime/api/base.py).
        app.state.command_executor = ThreadPoolExecutor(
            config.command_threads, thread_name_prefix="command"
        )
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(app.state.sessions)
                await stack.enter_async_context(app.state.views)
                await stack.enter_async_context(workers_api.sweeper(app))
                for extra in lifespans:
                    await stack.enter_async_context(extra(app))
                yield
        finally:
            # Calls still queued belong to clients the server has stopped answering.
            await run_in_threadpool(
                partial(app.state.command_executor.shutdown, wait=True, cancel_futures=True)
            )
            await run_in_threadpool(app.state.studio.close)

    # ---- extra routes (the websocket hub's /ws) are mounted here, first ----
    routes: list[BaseRoute] = [*extra_routes, *_extra(config, "routes")]
    routes.append(Route("/health", health, methods=["GET"]))
    routes += observability_routes()
    if config.serve_api:
        routes.append(Route("/openapi.json", openapi, methods=["GET"]))
        routes += [route(endpoint) for endpoint in ENDPOINTS]
        media = media_api.mount(config.media_dir)
        routes.append(
            Mount(media.path, app=read_only(media_api.guarded(media.app)), name=media.name)
        )
        routes.append(console_mount())  # the console at /console (realtime/console/)
    app = Starlette(
        routes=resources(routes),
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
        middleware=[Middleware(Observed, routes=routes)],
    )
    # The same routes, asked only where a path can match (realtime/api/routing.py).
    app.router = Routes(app.routes, lifespan=lifespan)
    return app


def observability_routes() -> list[BaseRoute]:
    """`/health/live`, `/health/ready` and `/metrics`: on every role."""
    return [
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def _extra(config: EdgeConfig, key: str) -> list[Any]:
    value = config.extra.get(key) or ()
    return list(value)  # type: ignore[call-overload]

"""The Starlette application factory: resources live in the lifespan, nothing at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from realtime.config import EdgeConfig


async def health(request: Request) -> JSONResponse:
    studio = request.app.state.studio
    head = await run_in_threadpool(studio.head_position)
    return JSONResponse({"status": "ok", "head_position": head})


def create_app(config: EdgeConfig) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.config = config
        app.state.studio = await run_in_threadpool(config.build_studio)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.studio.close)

    return Starlette(routes=[Route("/health", health)], lifespan=lifespan)

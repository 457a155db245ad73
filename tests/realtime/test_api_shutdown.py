"""A command that arrives after the server's command threads stopped is answered 503
`shutting_down` with the usual error body, never a 500: whether it came after the
threads were stopped, or was still queued for one when they were (`cancel_futures`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from realtime.api import tasks
from realtime.api.base import Call, Endpoint, Reply, route
from realtime.api.media import MediaUrls
from realtime.errors import ShuttingDownError, exception_handlers
from realtime.observe import Observed


def app_running(work: Callable[[], Any], executor: ThreadPoolExecutor) -> Starlette:
    """One route, `POST /work`, whose handler runs `work` on `executor` (as every
    command handler does through `Call.run`)."""

    async def handler(call: Call) -> Reply:
        return Reply({"done": await call.run(work)})

    endpoint = Endpoint("POST", "/work", handler, "work", "test", auth="none")
    routes = [route(endpoint)]
    app = Starlette(
        routes=routes,
        exception_handlers=exception_handlers(),
        middleware=[Middleware(Observed, routes=routes)],
    )
    app.state.command_executor = executor
    app.state.media_urls = MediaUrls("a media secret for the shutdown tests")
    return app


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge")


def expect_shutting_down(answer: httpx.Response, name: str) -> None:
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["x-correlation-id"]
    assert answer.json() == {
        "error": "Service Unavailable",
        "code": "shutting_down",
        "message": f"the server is shutting down: {name} was not run; retry",
    }


def test_a_command_after_the_command_threads_stopped_is_answered_503() -> None:
    def work() -> str:
        return "ran"

    executor = ThreadPoolExecutor(1)
    executor.shutdown()

    async def scenario() -> httpx.Response:
        async with client(app_running(work, executor)) as http:
            return await http.post("/work")

    expect_shutting_down(asyncio.run(scenario()), "work")


def test_a_command_still_queued_when_the_threads_stop_is_answered_503() -> None:
    started, release = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait(10)
        return "ran"

    executor = ThreadPoolExecutor(1)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with client(app_running(work, executor)) as http:
            first = asyncio.ensure_future(http.post("/work"))  # takes the one thread
            await asyncio.to_thread(started.wait, 10)
            second = asyncio.ensure_future(http.post("/work"))  # queued behind it
            await asyncio.sleep(0.2)
            executor.shutdown(wait=False, cancel_futures=True)
            release.set()
            return await first, await second

    first, second = asyncio.run(scenario())
    assert first.status_code == 200 and first.json() == {"done": "ran"}
    expect_shutting_down(second, "work")


def test_a_command_that_ran_is_answered_as_before() -> None:
    with ThreadPoolExecutor(1) as executor:

        async def scenario() -> httpx.Response:
            async with client(app_running(lambda: 7, executor)) as http:
                return await http.post("/work")

        answer = asyncio.run(scenario())
    assert answer.status_code == 200 and answer.json() == {"done": 7}


def test_a_task_creation_after_shutdown_names_the_verb_it_did_not_run() -> None:
    executor = ThreadPoolExecutor(1)
    executor.shutdown()
    state = SimpleNamespace(command_executor=executor, rate_limiter=None, studio=None)
    call = Call.__new__(Call)
    call.request = SimpleNamespace(app=SimpleNamespace(state=state), headers={})  # type: ignore[assignment]
    call.principal = SimpleNamespace(user_id="u", scope="u")  # type: ignore[assignment]
    call.meta = lambda **kw: SimpleNamespace(idempotency_key=None)  # type: ignore[method-assign]

    with pytest.raises(ShuttingDownError) as refused:
        asyncio.run(tasks._queue(call, uuid4(), lambda: [], False, None))
    assert "create_tasks was not run" in str(refused.value)

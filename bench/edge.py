"""The HTTP edge's own CPU per request, with nothing else in the way.

The real Starlette app stack (the `Observed` middleware, Starlette's exception layers,
`resources()` routing, `route()`), JWT authentication answered from its cache, body
validation and the reply, for `POST /api/generations` and `PATCH /api/generations/{id}`
bodies as `bench/api.py` sends them; the handlers build their command metadata and answer
a written position but write nothing. No socket, no h11, no command threads: ASGI calls
on one event loop. Prints the process CPU per request (best of `--repeat`), a figure the
machine's other load hardly moves; run it in two trees to compare them. `--routes` also
times matching the bench's paths against the whole app's routes.

    python bench/edge.py [--requests 3000] [--repeat 5] [--routes]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Match

from realtime import models as m
from realtime.api.base import Call, Endpoint, Reply, route, written
from realtime.api.media import MediaUrls
from realtime.api.routing import resources
from realtime.auth import Authenticator, issue_jwt
from realtime.errors import exception_handlers
from realtime.observe import Observed
from realtime.sessions import SessionPositions

SECRET = "bench-secret-of-at-least-thirty-two-bytes"


async def create(call: Call) -> Reply:
    call.meta()
    return written({"generation_id": str(uuid.uuid4()), "position": 12345}, 201, id="x")


async def patch(call: Call) -> Reply:
    call.meta()
    return written({"generation_id": str(call.path["id"]), "position": 12346})


class Limits:
    max_body_bytes = 10 * 2**20


def edge_app(user: str) -> Starlette:
    endpoints = [
        Endpoint("POST", "/api/generations", create, "c", "t", body=m.GenerationCreate),
        Endpoint("PATCH", "/api/generations/{id}", patch, "p", "t", body=m.GenerationPatch),
    ]
    routes = [route(e) for e in endpoints]
    app = Starlette(
        routes=resources(routes),
        exception_handlers=exception_handlers(),
        middleware=[Middleware(Observed, routes=routes)],
    )
    app.state.media_urls = MediaUrls("a media secret for the edge bench")
    app.state.sessions = SessionPositions("bench", None)
    app.state.config = Limits()
    auth = Authenticator(None, SECRET, "a service key", any_subject=True)  # type: ignore[arg-type]
    auth._known.add(user)  # registered: no studio needed
    app.state.auth = auth
    return app


async def one(app: Any, token: bytes, method: str, path: str, body: bytes) -> list[Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + token),
            (b"content-length", str(len(body)).encode()),
        ],
        "state": {},
    }
    sent: list[Any] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Any:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def edge(requests: int, repeat: int) -> float:
    user = f"bench-{uuid.uuid4().hex}"
    app, token = edge_app(user), issue_jwt(SECRET, user).encode()
    asks = [
        (
            "POST",
            "/api/generations",
            json.dumps({"project_id": str(uuid.uuid4()), "location": "/media/b.png"}).encode(),
        ),
        ("PATCH", f"/api/generations/{uuid.uuid4()}", b'{"starred": true}'),
    ]
    for ask in asks:  # warm, and answered as a command is
        assert (await one(app, token, *ask))[0]["status"] in (200, 201)
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for i in range(requests):
            await one(app, token, *asks[i % 2])
        best = min(best, (time.process_time() - started) / requests)
    return best * 1e6


def routing(requests: int) -> None:
    import os

    os.environ.setdefault("DARKROOM_JWT_SECRET", SECRET)
    from darkroom.settings import Settings
    from darkroom.wiring import build_app

    router = build_app(Settings()).router
    ident = uuid.uuid4()
    for path in (
        "/api/generations",
        "/api/shots/shot_generations",
        f"/api/shots/{ident}/generations/order",
        f"/api/generations/{ident}",
        "/api/tasks",
        "/media/x.png",
        "/nope",
    ):
        scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
        ask = getattr(router, "candidates", lambda _: router.routes)
        started = time.process_time()
        for _ in range(requests):
            next((r for r in ask(path) if r.matches(scope)[0] is Match.FULL), None)
        us = (time.process_time() - started) / requests * 1e6
        print(f"route matching {path[:40]:40} {us:6.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--routes", action="store_true")
    args = parser.parse_args()
    us = asyncio.run(edge(args.requests, args.repeat))
    print(f"edge CPU per request: {us:.1f} us (best of {args.repeat} x {args.requests})")
    if args.routes:
        routing(args.requests)


if __name__ == "__main__":
    main()

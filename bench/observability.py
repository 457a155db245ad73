"""What `realtime.observe.Observed` (correlation id, HTTP metrics, access-log check) adds
to one request: a bare ASGI endpoint behind a route template, called in process with and
without the middleware, the minimum of several rounds.

    python bench/observability.py [--rounds 8] [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.api.routing import Resource
from realtime.observe import Observed

HEADERS = [(b"content-type", b"application/json")]


async def endpoint(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"{}"})


RESOURCE = Resource("/api/projects/{id}", {"GET": endpoint})


async def router(scope: Any, receive: Any, send: Any) -> None:
    scope["endpoint"] = RESOURCE  # what Starlette's router leaves in the scope
    await endpoint(scope, receive, send)


async def receive() -> dict[str, Any]:
    return {"type": "http.request"}


async def send(message: Any) -> None:
    return None


async def per_request(app: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await app(
            {
                "type": "http",
                "method": "GET",
                "path": "/api/projects/1",
                "headers": [(b"host", b"x"), (b"authorization", b"Bearer x")],
            },
            receive,
            send,
        )
    return (time.perf_counter() - started) / n


async def main(rounds: int, n: int) -> None:
    observed = Observed(router)
    bare, wrapped = [], []
    for _ in range(rounds):
        bare.append(await per_request(router, n))
        wrapped.append(await per_request(observed, n))
    print(
        f"min of {rounds} rounds of {n}: bare {min(bare) * 1e6:.2f} us, observed "
        f"{min(wrapped) * 1e6:.2f} us, overhead {(min(wrapped) - min(bare)) * 1e6:.2f} us "
        "per request"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests))

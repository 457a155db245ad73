"""Idempotency keys while their first command runs in this process (`KeysInFlight`), and
what a key is bound to: its route and its request's hash (docs/EVENTSTORE.md,
"Idempotency"). Used by `ServiceBase._command`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from domain.errors import IdempotencyKeyInFlightError, IdempotencyKeyReusedError
from domain.metadata import CommandMeta


def bound_to(stored_route: str | None, stored_hash: str | None, meta: CommandMeta) -> bool:
    """Whether a request matches what a key was first used for. Unknown (None) on either
    side matches: rows stored before keys were bound, in-process callers."""
    return all(
        first is None or now is None or first == now
        for first, now in ((stored_route, meta.route), (stored_hash, meta.request_hash))
    )


def reused(key: str | None, first_route: str | None, meta: CommandMeta) -> Exception:
    same_route = first_route is None or meta.route is None or first_route == meta.route
    what = "another request body" if same_route else f"another route ({meta.route})"
    return IdempotencyKeyReusedError(
        f"idempotency key {key!r} was first used for {first_route or 'another request'} "
        f"with other content; it cannot be reused with {what}: send a new key"
    )


class KeysInFlight:
    """The idempotency keys whose first command is running in this process.

    A second request with a key held by another thread is refused at once: 409 if it
    is the same request (retry later, it will be a replay), 422 if it is another one.
    The thread that holds a key may nest commands under it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, list[Any]] = {}  # key -> [thread, route, hash, depth]

    @contextmanager
    def hold(self, key: str, meta: CommandMeta) -> Iterator[None]:
        me = threading.get_ident()
        with self._lock:
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = [me, meta.route, meta.request_hash, 0]
            elif held[0] != me:
                if not bound_to(held[1], held[2], meta):
                    raise reused(meta.idempotency_key, held[1], meta)
                raise IdempotencyKeyInFlightError(
                    f"a request with idempotency key {meta.idempotency_key!r} is still "
                    "being processed; retry with the same key once it has answered"
                )
            held[3] += 1
        try:
            yield
        finally:
            with self._lock:
                held[3] -= 1
                if held[3] == 0:
                    del self._held[key]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._held

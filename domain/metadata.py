"""Who did what, and why: metadata stamped on every stored event.

A command runs inside `command_context(meta)`; the application stamps the
current `CommandMeta` on each new event just before it is recorded, so the
metadata is stored with the event and comes back on replay.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

ACTOR_KINDS = ("user", "worker", "system")


@dataclass(frozen=True)
class CommandMeta:
    """Actor, correlation, causation and command ids of one command."""

    actor: str = "system:darkroom"
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    causation_id: str | None = None
    command_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    idempotency_key: str | None = None
    # What an idempotency key is bound to (docs/API.md, "Idempotency"): the route
    # template ("PATCH /api/generations/{id}") and a hash of the request (path
    # parameters, query and body as canonical JSON). None: not known (an
    # in-process caller), which matches any request.
    route: str | None = None
    request_hash: str | None = None
    # The credential the request came with: "service" (the service key) or
    # "user:<id>" (a user's token). None for in-process callers (the dispatcher,
    # tests, the CLI), which are trusted. Workers are registered to it.
    credential: str | None = None

    @classmethod
    def for_user(cls, user_id: object, **kw: Any) -> CommandMeta:
        return cls(actor=f"user:{user_id}", **kw)

    @classmethod
    def for_worker(cls, worker_id: object, **kw: Any) -> CommandMeta:
        return cls(actor=f"worker:{worker_id}", **kw)

    def caused(self, **kw: Any) -> CommandMeta:
        """A follow-up command in the same correlation, caused by this one."""
        return replace(
            self,
            causation_id=self.command_id,
            command_id=str(uuid.uuid4()),
            idempotency_key=None,
            route=None,
            request_hash=None,
            **kw,
        )

    def as_dict(self) -> dict[str, str | None]:
        return {
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "command_id": self.command_id,
        }


_current: contextvars.ContextVar[CommandMeta | None] = contextvars.ContextVar(
    "darkroom_command_meta", default=None
)


@contextmanager
def command_context(meta: CommandMeta) -> Iterator[CommandMeta]:
    token = _current.set(meta)
    try:
        yield meta
    finally:
        _current.reset(token)


def current_meta() -> CommandMeta:
    return _current.get() or CommandMeta()

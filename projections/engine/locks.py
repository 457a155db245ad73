"""Ownership of views: one advisory lock per view, all held by one runner or none."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from projections import db
from projections.errors import LockNotAcquiredError

if TYPE_CHECKING:
    from projections.views.base import View


class ViewLocks:
    """The locks of the views one runner hosts, on a connection of their own."""

    def __init__(self, conninfo: str, schema: str, views: Sequence[View]) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.names = [v.name for v in views]
        self.conn: psycopg.Connection[Any] | None = None

    def acquire(self, stopping: threading.Event, *, wait: bool, poll: float) -> None:
        """Own every view or none; `wait=True` is the standby (until `stopping` is set)."""
        self.conn = self.conn or psycopg.connect(self.conninfo, autocommit=True)
        keys = sorted(db.lock_key(f"view:{name}", self.schema) for name in self.names)
        while True:
            got = []
            for key in keys:
                row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                if row.fetchone()[0]:  # type: ignore[index]
                    got.append(key)
                else:
                    break
            if len(got) == len(keys):
                return
            for key in got:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            if not wait:
                raise LockNotAcquiredError(f"another runner owns one of {self.names}")
            if stopping.wait(poll):
                raise LockNotAcquiredError("stopped while waiting as a standby")

    def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            # Released now rather than when the server notices the disconnect,
            # so a standby takes over at once.
            with contextlib.suppress(Exception):
                self.conn.execute("SELECT pg_advisory_unlock_all()")
            self.conn.close()
        self.conn = None

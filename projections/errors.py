"""Errors raised by the read side."""

from __future__ import annotations


class ProjectionError(Exception):
    """Base class of every projections error."""


class ProjectionTimeoutError(ProjectionError):
    """A view did not reach the asked position in time (read-your-writes wait)."""

    def __init__(self, view: str, wanted: int, reached: int, timeout: float) -> None:
        super().__init__(
            f"view {view!r} reached position {reached}, not {wanted}, within {timeout:g} s"
        )
        self.view = view
        self.wanted = wanted
        self.reached = reached
        self.timeout = timeout


class UnknownViewError(ProjectionError):
    """A view name that no projection module defines."""


class InvalidCursorError(ProjectionError):
    """A pagination cursor that was not made by this service (or was tampered with)."""


class RebuildError(ProjectionError):
    """A rebuild could not complete its switch-over."""


class LockNotAcquiredError(ProjectionError):
    """Another process holds the runner lock for these views."""


class WriterGoneError(ProjectionError):
    """The process that commits the runner's batches died or closed its pipe."""


class SkippedBatchError(ProjectionError):
    """A batch the writer process did not write because an earlier one failed."""


class DatabaseUnavailableError(Exception):
    """PostgreSQL does not answer (stopped, restarting, unreachable): refused at once instead
    of waiting for a pool connection that cannot come. Not a ProjectionError: it stops
    writes as well as reads."""

    def __init__(self, since_s: float | None = None) -> None:
        detail = f" (for {since_s:.1f} s)" if since_s is not None else ""
        super().__init__(f"the database is not reachable{detail}; retry")
        self.since_s = since_s

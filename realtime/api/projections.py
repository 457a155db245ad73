"""Projection operations for the service key (the console's operator panel): each view's
status with its lag, dead letters with a retry, and a rebuild whose progress is polled."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from domain.errors import ConflictError, NotFoundError
from projections.engine import ops
from projections.errors import UnknownViewError
from realtime.api.base import Call, Endpoint, Reply


class ProjectionStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    view: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    dead_letters: int


class ProjectionReport(BaseModel):
    projections: list[ProjectionStatus]
    dead_letters: list[dict[str, Any]]


class Retried(BaseModel):
    requested: int
    remaining: int


class Rebuild(BaseModel):
    view: str
    state: str  # running | done | failed
    done: int
    total: int
    version: int | None = None
    error: str | None = None
    seconds: float


@dataclass
class Job:
    view: str
    state: str = "running"
    done: int = 0
    total: int = 0
    version: int | None = None
    error: str | None = None
    started: float = 0.0
    ended: float | None = None

    def out(self) -> dict[str, Any]:
        shown = {k: v for k, v in asdict(self).items() if k not in ("started", "ended")}
        return {**shown, "seconds": round((self.ended or time.monotonic()) - self.started, 3)}


def _known(name: str) -> None:
    try:
        ops.view_class(name)
    except UnknownViewError:
        raise NotFoundError("view", name) from None


def _report(conn: Any, studio: Any) -> dict[str, Any]:
    letters = [
        {
            k: v if isinstance(v, bool | int | float | str) or v is None else str(v)
            for k, v in row.items()
        }
        for row in ops.dead_letters(conn)
    ]
    return {"projections": ops.status(studio, conn), "dead_letters": letters}


async def report(call: Call) -> Reply:
    return Reply(await call.run(call.state.views.query, _report, call.studio))


async def retry(call: Call) -> Reply:
    name = call.path["name"]
    _known(name)
    return Reply(
        await call.run(ops.retry, call.studio, call.config.conninfo, call.config.schema, name)
    )


def _jobs(call: Call) -> dict[str, Job]:
    jobs: dict[str, Job] = call.state.__dict__.setdefault("_rebuilds", {})
    return jobs


async def start_rebuild(call: Call) -> Reply:
    """Starts the rebuild in a thread of its own and answers 202 at once."""
    name = call.path["name"]
    _known(name)
    jobs = _jobs(call)
    if name in jobs and jobs[name].state == "running":
        raise ConflictError(f"a rebuild of {name!r} is already running")
    job = jobs[name] = Job(view=name, started=time.monotonic())

    def progress(position: int, head: int) -> None:
        job.done, job.total = position, head

    def run() -> None:
        try:
            job.version = ops.rebuild(
                call.studio, call.config.conninfo, call.config.schema, name, progress=progress
            )
            job.done = job.total = max(job.done, job.total)
            job.state = "done"
        except Exception as error:  # reported through GET, as the CLI prints it
            job.state, job.error = "failed", f"{type(error).__name__}: {error}"
        job.ended = time.monotonic()

    threading.Thread(target=run, name=f"rebuild-{name}", daemon=True).start()
    return Reply(job.out(), 202)


async def rebuild_status(call: Call) -> Reply:
    name = call.path["name"]
    _known(name)
    job = _jobs(call).get(name)
    if job is None:
        raise NotFoundError("rebuild of view", name)
    return Reply(job.out())


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/projections",
        report,
        "Each view's position, lag (events and seconds) and dead letters (service key)",
        "projections",
        response=ProjectionReport,
        auth="service",
    ),
    Endpoint(
        "POST",
        "/api/projections/{name}/retry",
        retry,
        "Replay a view's dead letters (service key)",
        "projections",
        response=Retried,
        auth="service",
        errors=(404,),
    ),
    Endpoint(
        "POST",
        "/api/projections/{name}/rebuild",
        start_rebuild,
        "Rebuild a view into "
        "a new version and switch to it; answers at once, poll GET for progress "
        "(service key)",
        "projections",
        response=Rebuild,
        status=202,
        auth="service",
        errors=(404, 409),
    ),
    Endpoint(
        "GET",
        "/api/projections/{name}/rebuild",
        rebuild_status,
        "The last rebuild of a view started on this node: state and progress (service key)",
        "projections",
        response=Rebuild,
        auth="service",
        errors=(404,),
    ),
]

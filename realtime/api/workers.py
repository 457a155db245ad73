"""The pull-worker protocol: claim the next task, heartbeat, complete, fail, release.

The service key claims any user's tasks; a user's personal access token claims
and finishes only that user's own tasks (a self-hosted worker). A worker id belongs
to the credential that first used it (the service key, or a user: any of that user's
tokens); to any other credential it answers 404 on every worker route, and a
heartbeat's `stop` names only the caller's own tasks (`domain/services/liveness.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any

import anyio

from domain.pulse import Report
from realtime import models as m
from realtime.api import reads
from realtime.api.base import Call, Endpoint, Reply, written
from realtime.api.tasks import own_task

CANDIDATES = 50
log = logging.getLogger("darkroom.edge.sweeper")


@asynccontextmanager
async def sweeper(app: Any) -> AsyncIterator[None]:
    """Every `sweep_interval_s`, workers silent for `worker_timeout_s` lose their tasks
    (requeued with one more attempt, Failed at the third). Pull workers have no
    dispatcher to do it; several API processes sweeping is harmless (each sweep is an
    optimistic command)."""
    config = app.state.config
    if config.sweep_interval_s <= 0:
        yield
        return
    timeout = timedelta(seconds=config.worker_timeout_s)

    async def loop() -> None:
        while True:
            await anyio.sleep(config.sweep_interval_s)
            try:
                # On the command threads, as every request's command: the store's pool
                # sees at most `command_threads` threads at once.
                swept = await asyncio.get_running_loop().run_in_executor(
                    app.state.command_executor,
                    partial(app.state.studio.sweep_lost_workers, timeout=timeout),
                )
            except Exception:
                log.exception("sweeping lost workers failed; retrying next round")
                continue
            if swept.lost_workers:
                log.info("lost workers %s: %s", list(swept.lost_workers), swept.changed)

    async with anyio.create_task_group() as group:
        group.start_soon(loop)
        try:
            yield
        finally:
            group.cancel_scope.cancel()


def _candidates(conn: Any, run_type: str, model: str | None, owner: str | None) -> list[str]:
    from projections.views.tasks import claim_candidates

    rows = claim_candidates(
        conn, run_type, limit=CANDIDATES if owner is None else 1000, model_name=model
    )
    return [r["task_id"] for r in rows if owner is None or r["owner_id"] == owner]


async def claim(call: Call) -> Reply:
    body: m.ClaimRequest = call.body
    meta = call.meta(worker_id=body.worker_id)
    # Before the queue is read: another credential's worker id is 404 even when
    # there is nothing to claim.
    await call.run(call.studio.require_worker, body.worker_id, meta)
    ids = await reads.read(
        call, ("tasks",), _candidates, body.run_type, body.current_model, call.user
    )
    if not ids:
        return Reply(status=204)
    result = await call.run(
        call.studio.claim_next, body.worker_id, body.run_type, body.current_model, ids, meta=meta
    )
    if result is None:
        if call.user is not None:
            await call.run(_require_credit, call)
        return Reply(status=204)
    out = {k: result[k] for k in ("task_id", "task_type", "params", "project_id")}
    return Reply(out, 200, result.position)


def _require_credit(call: Call) -> None:
    """A user's own worker found their tasks but may not run them: say it is the credits."""
    call.studio.ledger(call.user or "").require_credit()


async def heartbeat(call: Call) -> Reply:
    body: m.Heartbeat = call.body
    report = Report(
        status=body.status,
        current_model=body.current_model,
        vram_used_mb=body.vram_used_mb,
        vram_total_mb=body.vram_total_mb,
    )
    result = await call.run(
        call.studio.heartbeat,
        body.worker_id,
        body.task_ids,
        meta=call.meta(worker_id=body.worker_id),
        report=report,
        exhaustive=body.exhaustive,
    )
    return written(result)


async def list_workers(call: Call) -> Reply:
    """Each worker's liveness, held tasks and last report (service key)."""
    query: m.WorkerList = call.query
    seconds = query.timeout_s or call.config.worker_timeout_s
    return Reply(await call.run(call.studio.workers, timeout=timedelta(seconds=seconds)))


async def complete(call: Call) -> Reply:
    body: m.TaskComplete = call.body
    await call.run(own_task, call, call.path["id"])
    result = await call.run(
        call.studio.complete_task,
        call.path["id"],
        body.output_location,
        thumbnail_url=body.thumbnail_url,
        result_data=body.result_data,
        worker_id=body.worker_id,
        meta=call.meta(worker_id=body.worker_id),
    )
    return written(result)


async def fail(call: Call) -> Reply:
    body: m.TaskFail = call.body
    await call.run(own_task, call, call.path["id"])
    return written(
        await call.run(
            call.studio.fail_task,
            call.path["id"],
            body.error_message,
            worker_id=body.worker_id,
            meta=call.meta(worker_id=body.worker_id),
        )
    )


async def release(call: Call) -> Reply:
    body: m.TaskRelease = call.body
    await call.run(own_task, call, call.path["id"])
    return written(
        await call.run(
            call.studio.release_task,
            call.path["id"],
            body.reason,
            worker_id=body.worker_id,
            meta=call.meta(worker_id=body.worker_id),
        )
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/workers",
        list_workers,
        "Workers: liveness (alive, silent, lost), "
        "held tasks, status, current model and VRAM from their heartbeats (service "
        "key)",
        "workers",
        query=m.WorkerList,
        response=list[m.WorkerOut],
        auth="service",
    ),
    Endpoint(
        "POST",
        "/api/workers/claim",
        claim,
        "Claim the next eligible task (204: none)",
        "workers",
        body=m.ClaimRequest,
        response=m.Claimed,
        other_statuses={204: None},
        auth="worker",
    ),
    Endpoint(
        "POST",
        "/api/workers/heartbeat",
        heartbeat,
        "A worker is alive (and runs these tasks)",
        "workers",
        body=m.Heartbeat,
        response=m.HeartbeatOut,
        auth="worker",
    ),
    Endpoint(
        "POST",
        "/api/tasks/{id}/complete",
        complete,
        "Complete a running task with its output (creates its result, bills once)",
        "workers",
        body=m.TaskComplete,
        response=m.Written,
        auth="worker",
    ),
    Endpoint(
        "POST",
        "/api/tasks/{id}/fail",
        fail,
        "Fail a running task (cascades to its relatives; nothing is charged)",
        "workers",
        body=m.TaskFail,
        response=m.Written,
        auth="worker",
    ),
    Endpoint(
        "POST",
        "/api/tasks/{id}/release",
        release,
        "Hand a running task back to the "
        "queue without spending an attempt (a worker stopping gracefully; a crash or "
        "a retryable error requeues with `PATCH …/status`)",
        "workers",
        body=m.TaskRelease,
        response=m.Written,
        auth="worker",
    ),
]

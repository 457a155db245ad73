"""The pull-worker protocol: claim the next task, heartbeat, complete, fail.

The service key claims any user's tasks; a user's personal access token claims
only that user's own tasks (a self-hosted worker).
"""

from __future__ import annotations

from realtime import models as m
from realtime.api.base import Call, Endpoint, Reply, written


async def claim(call: Call) -> Reply:
    body: m.ClaimRequest = call.body
    result = await call.run(call.studio.claim_next_task, body.worker_id, body.run_type,
                            body.current_model, owner_id=call.user,
                            meta=call.meta(worker_id=body.worker_id))
    if result is None or not result.get("task_id"):
        return Reply(status=204)
    body_out = {k: result[k] for k in ("task_id", "task_type", "params", "project_id")}
    return Reply(body_out, 200, result.get("position"))


async def heartbeat(call: Call) -> Reply:
    body: m.Heartbeat = call.body
    result = await call.run(call.studio.worker_heartbeat, body.worker_id,
                            status=body.status, current_model=body.current_model,
                            task_ids=body.task_ids, meta=call.meta(worker_id=body.worker_id))
    return written(result)


async def complete(call: Call) -> Reply:
    body: m.TaskComplete = call.body
    result = await call.run(call.studio.complete_task, call.path["id"], body.output_location,
                            thumbnail_url=body.thumbnail_url, result_data=body.result_data,
                            user_id=call.user, meta=call.meta())
    return written(result)


async def fail(call: Call) -> Reply:
    body: m.TaskFail = call.body
    return written(await call.run(call.studio.fail_task, call.path["id"], body.error_message,
                                  user_id=call.user, meta=call.meta()))


ENDPOINTS = [
    Endpoint("POST", "/api/workers/claim", claim, "Claim the next eligible task (204: none)",
             "workers", body=m.ClaimRequest, response=m.Claimed,
             other_statuses={204: None}, auth="worker"),
    Endpoint("POST", "/api/workers/heartbeat", heartbeat, "A worker is alive (and runs these "
             "tasks)", "workers", body=m.Heartbeat, response=m.Written, auth="worker"),
    Endpoint("POST", "/api/tasks/{id}/complete", complete, "Complete a running task with its "
             "output (creates its result, bills once)", "workers", body=m.TaskComplete,
             response=m.Written, auth="worker"),
    Endpoint("POST", "/api/tasks/{id}/fail", fail, "Fail a running task (cascades to its "
             "relatives; nothing is charged)", "workers", body=m.TaskFail,
             response=m.Written, auth="worker"),
]

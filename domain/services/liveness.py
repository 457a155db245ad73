"""Worker liveness: heartbeats, the lost-worker sweep and the blocked-task repair.

Liveness lives in a `Worker` aggregate per worker (the tasks it holds, lost or not),
listed on a `WorkerRoster` that changes only when a worker comes or goes, and in the
studio's `pulse` (the last heartbeat: not an event, see `domain/pulse.py`). A worker
silent for longer than the timeout loses its tasks: requeued with one more attempt,
or Failed at the third (and the failure cascades).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from domain.claiming import dependency_failed
from domain.metadata import CommandMeta
from domain.roster import ROSTER_ID, WorkerRoster
from domain.services.base import Result, as_uuid
from domain.services.base import now as _now
from domain.services.lifecycle import TaskLifecycle
from domain.task import IN_PROGRESS, Task
from domain.worker import LOST_AFTER, Worker


class LivenessServices(TaskLifecycle):
    def heartbeat(self, worker_id: str, task_ids: Iterable[object] = (),
                  now: datetime | None = None, meta: CommandMeta | None = None) -> Result:
        """The worker is alive. `stop` lists the tasks it reported that it no longer
        holds (cancelled, requeued, finished elsewhere): it should drop them."""
        reported = [as_uuid(t, "task id") for t in task_ids]
        at = now or _now()

        def decide() -> Any:
            batch = self._batch(at)
            worker = self._worker(batch, worker_id)
            worker.heartbeat(at)
            return batch.changed, {"worker_id": worker_id,
                                   "stop": [str(t) for t in worker.not_holding(reported)]}
        result = self._command(meta or CommandMeta.for_worker(worker_id), decide)
        self.pulse.touch(worker_id, at)
        return result

    def sweep_lost_workers(self, now: datetime | None = None,
                           timeout: timedelta = LOST_AFTER,
                           meta: CommandMeta | None = None) -> Result:
        """Workers silent for longer than `timeout` lose their tasks: requeued with one
        more attempt, or Failed at the third (with the cascade). A live worker's task
        running over 24 h fails. One save per worker."""
        at = now or _now()
        meta = meta or CommandMeta(actor="system:sweeper")
        roster = self._batch(at).find(ROSTER_ID)
        result: Result = {"lost_workers": [], "changed": {}, "position": self.head_position()}
        for worker_id in list(roster.workers if isinstance(roster, WorkerRoster) else []):
            worker = self._batch(at).find(Worker.id_for(worker_id))
            pulse = self.pulse.last_seen(worker_id)
            if isinstance(worker, Worker) and not (worker.is_lost(at, timeout, pulse)
                                                   or worker.stuck(at)):
                continue
            swept = self._command(meta.caused(), partial(self._sweep_one, worker_id, at, timeout))
            if swept["lost"]:
                result["lost_workers"].append(worker_id)
            result["changed"].update(swept["changed"])
            result["position"] = max(result["position"], swept["position"])
        return result

    def _sweep_one(self, worker_id: str, at: datetime, timeout: timedelta) -> Any:
        batch = self._batch(at)
        worker = batch.find(Worker.id_for(worker_id))
        if not isinstance(worker, Worker):
            return [], {"lost": False, "changed": {}}
        pulse = self.pulse.last_seen(worker_id)
        lost = worker.is_lost(at, timeout, pulse)
        for task_id in list(worker.running) if lost else worker.stuck(at):
            task = batch.find(task_id)
            if isinstance(task, Task) and task.status == IN_PROGRESS \
                    and task.worker_id == worker_id:
                if lost:
                    self._change(batch, task, task.worker_lost, at)
                else:
                    self._change(batch, task, task.fail, "Failed: no result after 24 hours", at)
        if lost:
            worker.mark_lost(at, pulse)
            roster = batch.find(ROSTER_ID)
            if isinstance(roster, WorkerRoster):
                roster.leave(worker_id)
        return batch.changed, {"lost": lost, "changed": batch.status_changes()}

    def fail_blocked_tasks(self, candidate_ids: Iterable[object] = (),
                           meta: CommandMeta | None = None) -> Result:
        """Queued tasks whose dependency Failed or was Cancelled become Failed. Failures
        already cascade to dependants in their own save; this repairs what a caller
        (the task board's Queued tasks with dependencies) still finds blocked."""
        ids = [as_uuid(c, "task id") for c in candidate_ids]

        def decide() -> Any:
            batch = self._batch()
            for task in [t for t in map(batch.find, ids) if isinstance(t, Task)]:
                statuses = {d: t.status for d in task.dependant_on
                            if isinstance(t := batch.find(d), Task)}
                if dependency_failed(task, statuses):
                    self._change(batch, task, task.fail,
                                 "Failed: a dependency failed or was cancelled", batch.at)
            return batch.changed, {"changed": batch.status_changes()}
        return self._command(meta or CommandMeta(actor="system:sweeper"), decide)

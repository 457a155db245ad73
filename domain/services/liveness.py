"""Worker liveness: heartbeats, the lost-worker sweep and the blocked-task repair.

Liveness lives in a `Worker` aggregate per worker (the tasks it holds, lost or not),
listed on a `WorkerRoster` that changes only when a worker comes or goes, and in the
studio's `pulse` (the last heartbeat: not an event, see `domain/pulse.py`). A worker
silent for longer than the timeout loses its tasks: requeued with one more attempt,
or Failed at the third (and the failure cascades).

A worker id belongs to the credential that first used it (`CommandMeta.credential`:
the service key, or a user's token): `worker_for` registers it to that credential, and
every verb that names a worker refuses another credential's as not found. In-process
callers (no credential) are trusted and register theirs to `system`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from uuid import UUID

from domain.claiming import dependency_failed
from domain.metadata import CommandMeta
from domain.pulse import NO_REPORT, Beat, Report
from domain.roster import ROSTER_ID, WorkerRoster
from domain.services.base import Decision, as_uuid
from domain.services.base import now as _now
from domain.services.lifecycle import Batch, TaskLifecycle
from domain.services.taskresults import (
    HeartbeatAnswered,
    StatusesChanged,
    WorkersSwept,
    WorkerSwept,
)
from domain.task import IN_PROGRESS, Task
from domain.worker import LOST_AFTER, SYSTEM_OWNER, Worker

# The workers listing: pulse rows older than this (and not on the roster) are history.
LISTED_SINCE = timedelta(hours=24)
LISTED_MAX = 1000


def credential_of(meta: CommandMeta | None) -> str | None:
    return meta.credential if meta is not None else None


def worker_for(batch: Batch, worker_id: str, credential: str | None) -> Worker:
    """The worker a caller with `credential` acts as, in `batch`: registered to that
    credential (and put on the roster) on first sight, claimed by it if unclaimed;
    another credential's worker raises `WorkerNotFoundError`. A lost worker is left
    for `TaskLifecycle._worker` to bring back."""
    found = batch.find(Worker.id_for(worker_id))
    if isinstance(found, Worker):
        if credential is None:
            return found
        found.claim(credential)
        return found
    worker = batch.add(Worker.register(worker_id, batch.at, owner=credential or SYSTEM_OWNER))
    roster = batch.find(ROSTER_ID)
    if not isinstance(roster, WorkerRoster):
        roster = batch.add(WorkerRoster())
    roster.join(worker_id)
    return worker


def require_own_worker(batch: Batch, worker_id: str | None, credential: str | None) -> None:
    """Refuses (not found) a worker id registered to another credential; writes nothing.
    Ownership never changes once set, so this check may run before the command."""
    if not worker_id or credential is None:
        return
    found = batch.find(Worker.id_for(worker_id))
    if isinstance(found, Worker):
        found.require_owner(credential)


def own_tasks(batch: Batch, task_ids: list[UUID], credential: str | None) -> list[UUID]:
    """Of these task ids, those a user's credential may hear about: that user's tasks.
    The service key and in-process callers hear about any."""
    if credential is None or not credential.startswith("user:"):
        return task_ids
    user = credential.removeprefix("user:")
    return [
        t for t in task_ids if isinstance(task := batch.find(t), Task) and task.owner_id == user
    ]


def worker_row(
    worker: Worker, beat: Beat | None, at: datetime, timeout: timedelta
) -> dict[str, object]:
    pulse = beat.last_seen if beat else None
    seen = worker.seen_at(pulse)
    report = beat.report if beat else NO_REPORT
    liveness = (
        "lost" if worker.lost else ("silent" if worker.is_lost(at, timeout, pulse) else "alive")
    )
    return {
        "worker_id": worker.worker_id,
        "owner": worker.owner,
        "liveness": liveness,
        "last_seen": seen.isoformat(),
        "silent_s": round((at - seen).total_seconds(), 3),
        "held_tasks": [
            {"task_id": str(t), "since": since.isoformat()} for t, since in worker.running.items()
        ],
        "status": report.status,
        "current_model": report.current_model,
        "vram_used_mb": report.vram_used_mb,
        "vram_total_mb": report.vram_total_mb,
    }


class LivenessServices(TaskLifecycle):
    def heartbeat(
        self,
        worker_id: str,
        task_ids: Iterable[object] = (),
        now: datetime | None = None,
        meta: CommandMeta | None = None,
        report: Report = NO_REPORT,
        exhaustive: bool = False,
    ) -> HeartbeatAnswered:
        """The worker is alive. `stop` lists the tasks it reported that it no longer
        holds (cancelled, requeued, finished elsewhere): it should drop them. A user's
        credential hears only about that user's tasks; another credential's worker is
        not found. Its `report` (status, model, VRAM) goes to the pulse, not the log.

        `exhaustive`: `task_ids` is every task the worker holds, those whose outcome it
        is still sending included. A task it holds here but leaves out, taken at least
        `UNLISTED_AFTER` ago, is a claim whose reply it never got (a timeout, a dropped
        connection): requeued with one more attempt, as a lost worker's tasks are
        (`changed`). Without it (the default), a list names some of its tasks only and
        nothing is requeued."""
        reported = [as_uuid(t, "task id") for t in task_ids]
        at = now or _now()
        credential = credential_of(meta)

        def decide() -> Decision[HeartbeatAnswered]:
            batch = self._batch(at)
            worker_for(batch, worker_id, credential)
            worker = self._worker(batch, worker_id)
            worker.heartbeat(at, self.pulse.last_seen(worker_id))
            stop = own_tasks(batch, worker.not_holding(reported), credential)
            for task_id in worker.unlisted(reported, at) if exhaustive else []:
                self._requeue_held(batch, worker, task_id, "its worker no longer lists it")
            return batch.changed, HeartbeatAnswered(
                worker_id=worker_id, stop=tuple(stop), changed=batch.status_changes()
            )

        result = self._command(meta or CommandMeta.for_worker(worker_id), decide)
        self.pulse.touch(worker_id, at, report)
        return result

    def _requeue_held(self, batch: Batch, worker: Worker, task_id: UUID, reason: str) -> None:
        """The worker's task back to the queue, one more attempt spent (Failed at the
        third); a task that moved on without the worker hearing is only let go."""
        task = batch.find(task_id)
        if (
            isinstance(task, Task)
            and task.status == IN_PROGRESS
            and task.worker_id == worker.worker_id
        ):
            self._change(batch, task, task.requeue, reason, batch.at)
        else:
            worker.release(task_id)

    def workers(
        self, now: datetime | None = None, timeout: timedelta = LOST_AFTER
    ) -> list[dict[str, object]]:
        """Every worker on the roster or seen in the last day, by id (at most
        `LISTED_MAX`): `liveness` (alive; silent: past `timeout`, not swept yet; lost),
        the tasks it holds and its last report from the pulse. A read: nothing written."""
        at = now or _now()
        beats = {b.worker_id: b for b in self.pulse.beats(at - LISTED_SINCE)}
        batch = self._batch(at)
        roster = batch.find(ROSTER_ID)
        names = set(beats) | set(roster.workers if isinstance(roster, WorkerRoster) else [])
        listed = []
        for worker_id in sorted(names)[:LISTED_MAX]:
            worker = batch.find(Worker.id_for(worker_id))
            if isinstance(worker, Worker):
                listed.append(worker_row(worker, beats.get(worker_id), at, timeout))
        return listed

    def require_worker(self, worker_id: str | None, meta: CommandMeta | None = None) -> None:
        """`WorkerNotFoundError` if `worker_id` is registered to a credential other than
        the caller's (`meta.credential`); a read, nothing written."""
        require_own_worker(self._batch(), worker_id, credential_of(meta))

    def sweep_lost_workers(
        self,
        now: datetime | None = None,
        timeout: timedelta = LOST_AFTER,
        meta: CommandMeta | None = None,
    ) -> WorkersSwept:
        """Workers silent for longer than `timeout` lose their tasks: requeued with one
        more attempt, or Failed at the third (with the cascade). A live worker's task
        running over 24 h fails. One save per worker."""
        at = now or _now()
        meta = meta or CommandMeta(actor="system:sweeper")
        roster = self._batch(at).find(ROSTER_ID)
        lost_workers: list[str] = []
        changed: dict[str, str] = {}
        position = self.head_position()
        for worker_id in list(roster.workers if isinstance(roster, WorkerRoster) else []):
            worker = self._batch(at).find(Worker.id_for(worker_id))
            pulse = self.pulse.last_seen(worker_id)
            if isinstance(worker, Worker) and not (
                worker.is_lost(at, timeout, pulse) or worker.stuck(at)
            ):
                continue
            swept = self._command(meta.caused(), partial(self._sweep_one, worker_id, at, timeout))
            if swept.lost:
                lost_workers.append(worker_id)
            changed.update(swept.changed)
            position = max(position, swept.position)
        return WorkersSwept(lost_workers=tuple(lost_workers), changed=changed, position=position)

    def _sweep_one(self, worker_id: str, at: datetime, timeout: timedelta) -> Decision[WorkerSwept]:
        batch = self._batch(at)
        worker = batch.find(Worker.id_for(worker_id))
        if not isinstance(worker, Worker):
            return [], WorkerSwept(lost=False, changed={})
        pulse = self.pulse.last_seen(worker_id)
        lost = worker.is_lost(at, timeout, pulse)
        for task_id in list(worker.running) if lost else worker.stuck(at):
            task = batch.find(task_id)
            if (
                isinstance(task, Task)
                and task.status == IN_PROGRESS
                and task.worker_id == worker_id
            ):
                if lost:
                    self._change(batch, task, task.worker_lost, at)
                else:
                    self._change(batch, task, task.fail, "Failed: no result after 24 hours", at)
        if lost:
            worker.mark_lost(at, pulse)
            roster = batch.find(ROSTER_ID)
            if isinstance(roster, WorkerRoster):
                roster.leave(worker_id)
        return batch.changed, WorkerSwept(lost=lost, changed=batch.status_changes())

    def fail_blocked_tasks(
        self, candidate_ids: Iterable[object] = (), meta: CommandMeta | None = None
    ) -> StatusesChanged:
        """Queued tasks whose dependency Failed or was Cancelled become Failed. Failures
        already cascade to dependants in their own save; this repairs what a caller
        (the task board's Queued tasks with dependencies) still finds blocked."""
        ids = [as_uuid(c, "task id") for c in candidate_ids]

        def decide() -> Decision[StatusesChanged]:
            batch = self._batch()
            for task in [t for t in map(batch.find, ids) if isinstance(t, Task)]:
                statuses = {
                    d: t.status for d in task.dependant_on if isinstance(t := batch.find(d), Task)
                }
                if dependency_failed(task, statuses):
                    self._change(
                        batch,
                        task,
                        task.fail,
                        "Failed: a dependency failed or was cancelled",
                        batch.at,
                    )
            return batch.changed, StatusesChanged(changed=batch.status_changes())

        return self._command(meta or CommandMeta(actor="system:sweeper"), decide)

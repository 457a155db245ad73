"""What every task verb shares: one unit of work per command, status changes that keep
the owner's workload and the worker in step, cascades, and billing.

A status change goes through `_change`, which (in the same save) tracks the task in
its owner's `Workload` (this enforces the limit of tasks In Progress), moves it on or
off its `Worker`, and cascades a failure or cancellation: to the orchestrator family
(the orchestrator fails with "N of M segments failed", the rest is cancelled) and to
Queued tasks that depend on it (they fail). Families are small, so one save holds it all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TypeVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate

from domain.billing import amount_to_charge, completed_child_seconds
from domain.catalogue import (
    CATALOGUE_ID,
    DEFAULT_CATALOGUE,
    FAMILIES,
    PER_SECOND,
    SEED_DEFAULT_RATE,
    TaskType,
    TaskTypeCatalogue,
    resolve_default,
)
from domain.claiming import cascade_targets, orchestrator_outcome
from domain.credits import CreditLedger
from domain.errors import (
    DependencyFailedError,
    GenerationNotFoundError,
    IdempotencyKeyReusedError,
    NotFoundError,
    ProjectNotFoundError,
    ShotNotFoundError,
    TaskHeldElsewhereError,
    TaskNotFoundError,
)
from domain.generation import Generation
from domain.metadata import CommandMeta
from domain.project import Project
from domain.roster import ROSTER_ID, WorkerRoster
from domain.services.base import Decision, ServiceBase, as_uuid, now
from domain.services.resources import with_loras
from domain.services.taskresults import TaskChanged
from domain.shot import Shot
from domain.task import CANCELLED, COMPLETE, FAILED, IN_PROGRESS, QUEUED, Task
from domain.worker import Worker
from domain.workload import Workload

A = TypeVar("A", bound=Aggregate)

# Orchestrators need no worker: they are In Progress from birth, held by this name.
ORCHESTRATOR_WORKER = "system:orchestrator"
TASK_KEY_NAMESPACE = uuid5(NAMESPACE_URL, "https://darkroom.studio/task-idempotency-key")


def task_id_for(owner_id: str, key: str) -> UUID:
    """The id of the task an owner's idempotency key creates: a repeat finds it."""
    return uuid5(TASK_KEY_NAMESPACE, f"{owner_id}:{key}")


def request_binding(meta: CommandMeta | None) -> str | None:
    """What a task-creation key is bound to: the route and the request's hash (the key
    makes the task id, so the task itself remembers it). None for in-process callers."""
    if meta is None or meta.request_hash is None:
        return None
    return hashlib.sha256(f"{meta.route}\n{meta.request_hash}".encode()).hexdigest()


def check_bound(known: Task, binding: str | None, key: str | None) -> None:
    if known.request_hash is not None and binding is not None and known.request_hash != binding:
        raise IdempotencyKeyReusedError(
            f"idempotency key {key!r} was first used to create task {known.id} with another "
            "request; it cannot be reused with a different route or body: send a new key"
        )


def _failure_pool(root: Task, children: list[Task]) -> list[Task]:
    """What "N of M segments failed" counts: the segments when one of them failed (the
    stitch is no segment), else every child (the stitch failed)."""
    family = next((types for types in FAMILIES.values() if types[0] == root.task_type), None)
    segments = [c for c in children if family and c.task_type == family[1]]
    return segments if any(c.status in (FAILED, CANCELLED) for c in segments) else children


class Batch:
    """The aggregates one decision reads and changes: each loaded once, saved together."""

    def __init__(self, repository: Repository[UUID], at: datetime) -> None:
        self._repository = repository
        self.at = at
        self._loaded: dict[UUID, Aggregate | None] = {}
        self._statuses: dict[UUID, str | None] = {}

    def find(self, ident: object) -> Aggregate | None:
        key = as_uuid(ident)
        if key not in self._loaded:
            try:
                self._loaded[key] = self._repository.get(key)
            except AggregateNotFoundError:
                self._loaded[key] = None
            self._remember(self._loaded[key])
        return self._loaded[key]

    def load(self, ident: object, cls: type[A], error: Callable[[UUID], NotFoundError]) -> A:
        found = self.find(ident)
        if not isinstance(found, cls):
            raise error(as_uuid(ident))
        return found

    def add(self, aggregate: A) -> A:
        self._loaded[aggregate.id] = aggregate
        self._statuses.setdefault(aggregate.id, None)
        return aggregate

    @property
    def changed(self) -> list[Aggregate]:
        return [a for a in self._loaded.values() if a is not None and a.pending_events]

    def status_changes(self) -> dict[str, str]:
        """Every task whose status this decision changed, with its new status."""
        return {
            str(i): a.status
            for i, a in self._loaded.items()
            if isinstance(a, Task) and a.status != self._statuses.get(i)
        }

    def _remember(self, aggregate: Aggregate | None) -> None:
        if isinstance(aggregate, Task):
            self._statuses[aggregate.id] = aggregate.status


class TaskLifecycle(ServiceBase):
    """Loading, status changes, cascades and billing, shared by the task verbs."""

    def _batch(self, at: datetime | None = None) -> Batch:
        return Batch(self.repository, at or now())

    # -- loading -------------------------------------------------------------
    def _task(self, batch: Batch, task_id: object, user_id: str | None = None) -> Task:
        task = batch.load(task_id, Task, TaskNotFoundError)
        if user_id is not None and task.owner_id != user_id:
            raise TaskNotFoundError(task.id)
        return task

    def _owned_project(self, batch: Batch, project_id: object, user_id: str | None) -> Project:
        project = batch.load(project_id, Project, ProjectNotFoundError)
        if project.deleted or (user_id is not None and project.owner_id != user_id):
            raise ProjectNotFoundError(project.id)
        return project

    @staticmethod
    def _generation_in(batch: Batch, ident: object, project_id: UUID) -> Generation:
        generation = batch.load(ident, Generation, GenerationNotFoundError)
        if generation.project_id != project_id or generation.deleted:
            raise GenerationNotFoundError(generation.id)
        return generation

    @staticmethod
    def _shot_in(batch: Batch, ident: object, project_id: UUID) -> Shot:
        shot = batch.load(ident, Shot, ShotNotFoundError)
        if shot.project_id != project_id or shot.deleted:
            raise ShotNotFoundError(shot.id)
        return shot

    def _children(self, batch: Batch, orchestrator: Task) -> list[Task]:
        return [batch.load(c, Task, TaskNotFoundError) for c in orchestrator.child_task_ids]

    def _workload(self, batch: Batch, owner_id: str) -> Workload:
        found = batch.find(Workload.id_for(owner_id))
        return found if isinstance(found, Workload) else batch.add(Workload.start(owner_id))

    def _worker(self, batch: Batch, worker_id: str) -> Worker:
        """The worker, registered on first sight; a worker back from the dead rejoins."""
        found = batch.find(Worker.id_for(worker_id))
        if isinstance(found, Worker) and not found.lost:
            return found
        roster = batch.find(ROSTER_ID)
        if not isinstance(roster, WorkerRoster):
            roster = batch.add(WorkerRoster())
        roster.join(worker_id)
        return (
            found if isinstance(found, Worker) else batch.add(Worker.register(worker_id, batch.at))
        )

    def _balance(self, batch: Batch, owner_id: str) -> Decimal:
        ledger = batch.find(CreditLedger.id_for(owner_id))
        return ledger.balance if isinstance(ledger, CreditLedger) else Decimal(0)

    def _running(self, batch: Batch, owner_id: str) -> int:
        workload = batch.find(Workload.id_for(owner_id))
        return workload.running if isinstance(workload, Workload) else 0

    # -- the catalogue ---------------------------------------------------------
    def _resolve_type(self, batch: Batch, name: str) -> TaskType:
        """An active type (for new tasks): unknown and inactive names are refused."""
        catalogue = batch.find(CATALOGUE_ID)
        if isinstance(catalogue, TaskTypeCatalogue):
            return catalogue.resolve(name)
        return resolve_default(name)

    def _type_of(self, batch: Batch, task: Task) -> TaskType:
        """The row a task was made from, even if deactivated since; the seed's fallback."""
        catalogue = batch.find(CATALOGUE_ID)
        found = (
            catalogue.get(task.task_type)
            if isinstance(catalogue, TaskTypeCatalogue)
            else DEFAULT_CATALOGUE.get(task.task_type)
        )
        return found or TaskType(
            task.task_type,
            task.run_type,
            task.category,
            PER_SECOND,
            base_cost_per_second=SEED_DEFAULT_RATE,
        )

    # -- creation --------------------------------------------------------------
    def _new_task(
        self,
        batch: Batch,
        project: Project,
        task_type: TaskType,
        params: Mapping[str, object],
        *,
        dependant_on: Iterable[object] = (),
        task_id: UUID | None = None,
        key: str | None = None,
        request_hash: str | None = None,
    ) -> Task:
        # Every task, a run's included: its LoRAs are the owner's, resolved to their files.
        params = with_loras(batch, project.owner_id, params)
        task = Task.create(
            project_id=project.id,
            owner_id=project.owner_id,
            task_type=task_type,
            params=params,
            at=batch.at,
            task_id=task_id,
            dependant_on=dependant_on,  # type: ignore[arg-type]
            idempotency_key=key,
            request_hash=request_hash,
        )
        for ident in task.dependant_on:
            dependency = batch.find(ident)
            if not isinstance(dependency, Task) or dependency.owner_id != project.owner_id:
                raise TaskNotFoundError(ident)
            if dependency.status in (FAILED, CANCELLED):
                raise DependencyFailedError(
                    f"task {ident} is {dependency.status!r}: nothing can wait for it"
                )
            dependency.add_dependant(task.id)
        batch.add(task)
        self._workload(batch, project.owner_id).track(task)
        return task

    # -- status changes --------------------------------------------------------
    def _change(
        self, batch: Batch, task: Task, change: Callable[..., None], *args: object, **kwargs: object
    ) -> None:
        """Applies a status change (`change(*args, **kwargs)`, a method of `task`) and
        everything that must move with it."""
        before, holder = task.status, task.worker_id
        change(*args, **kwargs)
        if task.status == before:
            return
        self._workload(batch, task.owner_id).track(task)
        if before == IN_PROGRESS and holder and holder != ORCHESTRATOR_WORKER:
            worker = batch.find(Worker.id_for(holder))
            if isinstance(worker, Worker):
                worker.release(task.id)
        if task.status == IN_PROGRESS and task.worker_id != ORCHESTRATOR_WORKER:
            self._worker(batch, task.worker_id or "").take(task.id, batch.at)
        if task.status in (FAILED, CANCELLED):
            self._cascade(batch, task)

    def _cascade(self, batch: Batch, task: Task) -> None:
        self._cascade_family(batch, task)
        reason = f"dependency {task.id} ({task.task_type}) is {task.status}"
        for ident in task.dependants:
            dependant = batch.find(ident)
            if isinstance(dependant, Task) and dependant.status == QUEUED:
                self._change(batch, dependant, dependant.fail, reason, batch.at)

    def _cascade_family(self, batch: Batch, task: Task) -> None:
        root_id = task.id if task.is_orchestrator else task.orchestrator_task_id
        root = batch.find(root_id) if root_id else None
        if not isinstance(root, Task):
            return
        children = self._children(batch, root)
        reason = f"{task.task_type} {task.id} of this run is {task.status}"
        for ident in cascade_targets([root, *children], task.id):
            relative = batch.load(ident, Task, TaskNotFoundError)
            if relative.is_terminal:  # an earlier step of this cascade reached it
                continue
            if relative is root:
                pool = _failure_pool(root, children)
                outcome = orchestrator_outcome(pool, len(pool))
                message = (
                    outcome[1]
                    if outcome and outcome[1]
                    else f"{task.task_type} {task.id} is {task.status}"
                )
                self._change(batch, root, root.fail, message, batch.at)
            else:
                self._change(batch, relative, relative.cancel, batch.at, reason)

    def _settle_orchestrator(self, batch: Batch, child: Task) -> Task | None:
        """After a child completed: the orchestrator completes once every child has.
        Siblings are read, not saved: a run's children are chained by `dependant_on`, so
        they finish one after another and the last one settles the run."""
        root = batch.find(child.orchestrator_task_id) if child.orchestrator_task_id else None
        if not isinstance(root, Task) or root.is_terminal:
            return None
        children = self._children(batch, root)
        outcome = orchestrator_outcome(children, len(children))
        if outcome == (COMPLETE, None):
            self._change(batch, root, root.complete, child.output_location, batch.at)
            self._bill(batch, root, children)
        elif outcome is not None:
            message = outcome[1] or "Failed"
            self._change(batch, root, root.fail, message, batch.at)
        return root

    # -- billing ---------------------------------------------------------------
    def _bill(self, batch: Batch, task: Task, children: list[Task] | None = None) -> Decimal:
        """Once, on completion; an orchestrator pays for its children's seconds."""
        if task.is_orchestrator and children is None:
            children = self._children(batch, task)
        seconds = completed_child_seconds(children or []) if task.is_orchestrator else None
        amount = amount_to_charge(task, self._type_of(batch, task), seconds)
        task.record_cost(amount)
        if amount > 0:
            ledger = batch.find(CreditLedger.id_for(task.owner_id))
            if not isinstance(ledger, CreditLedger):
                ledger = batch.add(CreditLedger.open(task.owner_id))
            ledger.charge_for(task, amount, batch.at)
        return amount

    # -- guards ----------------------------------------------------------------
    @staticmethod
    def _check_holder(task: Task, worker_id: str | None) -> None:
        """A worker may act only on a running task it holds (a requeued task moved on)."""
        if worker_id is not None and task.status == IN_PROGRESS and task.worker_id != worker_id:
            raise TaskHeldElsewhereError(
                f"task {task.id} is held by {task.worker_id!r}, not by {worker_id!r}"
            )

    def _on_task(
        self,
        meta: CommandMeta | None,
        task_id: object,
        user_id: str | None,
        worker_id: str | None,
        act: Callable[[Batch, Task], None],
        at: datetime | None = None,
    ) -> TaskChanged:
        """A change of one task (and its cascade) as one command."""

        def decide() -> Decision[TaskChanged]:
            batch = self._batch(at)
            task = self._task(batch, task_id, user_id)
            self._check_holder(task, worker_id)
            act(batch, task)
            return batch.changed, TaskChanged(
                task_id=task.id, status=task.status, changed=batch.status_changes()
            )

        return self._command(meta, decide)

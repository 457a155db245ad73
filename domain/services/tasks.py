"""The task verbs: create, claim, status changes, completion (liveness: `liveness.py`).

Claims and every exit from In Progress save the task with its owner's `Workload` and
its `Worker`, atomically: exactly one worker wins a task (optimistic concurrency on
the task), and an owner never runs more than five at once (see `domain.workload`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.catalogue import (
    CATALOGUE_ID,
    DEFAULT_CATALOGUE,
    RUN_TYPES,
    TaskType,
    TaskTypeCatalogue,
)
from domain.claiming import Candidate, ineligibility, next_for_worker
from domain.errors import (
    ConcurrencyConflictError,
    GenerationNotFoundError,
    InsufficientCreditsError,
    InvalidParamsError,
    InvalidTransitionError,
    TaskNotClaimableError,
    TaskNotFoundError,
    ValidationError,
)
from domain.metadata import CommandMeta
from domain.project import Project
from domain.services.base import Result, as_uuid
from domain.services.base import now as _now
from domain.services.completion import Routing
from domain.services.lifecycle import (
    Batch,
    TaskLifecycle,
    check_bound,
    request_binding,
    task_id_for,
)
from domain.services.liveness import credential_of, require_own_worker, worker_for
from domain.task import (
    CANCELLED,
    COMPLETE,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    STATUSES,
    Task,
)
from domain.workload import Workload

# A claim that keeps losing races gives up and answers "nothing now"; the worker polls again.
CLAIM_ROUNDS = 4
GENERATION_PARAMS = ("child_generation_id", "regenerate_generation_id")


def _worker_meta(worker_id: str | None, meta: CommandMeta | None) -> CommandMeta | None:
    return meta or (CommandMeta.for_worker(worker_id) if worker_id else None)


def _user_meta(user_id: str | None, meta: CommandMeta | None) -> CommandMeta | None:
    return meta or (CommandMeta.for_user(user_id) if user_id else None)


class TaskServices(TaskLifecycle):
    """`user_id` is the acting user (None: a trusted caller); `worker_id`, when given,
    must hold the running task it acts on, and belong to the caller's credential
    (`meta.credential`; another credential's worker is not found, see `liveness.py`)."""

    def task(self, task_id: object, user_id: str | None = None) -> Task:
        """A task (another user's answers not found, like one that does not exist)."""
        task = self._load(task_id, Task, TaskNotFoundError)
        if user_id is not None and task.owner_id != user_id:
            raise TaskNotFoundError(task.id)
        return task

    def task_of_generation(self, generation_id: object, user_id: str | None = None) -> Task:
        """The task that made a generation: the one it was created by (its first
        `task_ids` entry), else the one that made its primary variant, else any variant's
        `source_task_id`. A generation made by no task (an upload) has none: not found."""
        generation = self.generation(generation_id, user_id)  # type: ignore[attr-defined]
        if generation.deleted:
            raise GenerationNotFoundError(generation.id)
        candidates = list(generation.task_ids)
        primary = generation.variants.get(generation.primary_variant_id)
        if primary is not None and primary.source_task_id is not None:
            candidates.append(primary.source_task_id)
        candidates += [
            v.source_task_id for v in generation.variants.values() if v.source_task_id is not None
        ]
        for task_id in candidates:
            try:
                return self.task(task_id)
            except TaskNotFoundError:
                continue
        raise TaskNotFoundError(f"of generation {generation.id}")

    def _own_worker(self, worker_id: str | None, meta: CommandMeta | None) -> None:
        require_own_worker(self._batch(), worker_id, credential_of(meta))

    # -- creation --------------------------------------------------------------
    def create_task(
        self,
        project_id: object,
        user_id: str | None,
        task_type: str,
        params: Mapping[str, Any],
        dependant_on: Iterable[object] = (),
        idempotency_key: str | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """A Queued task; a repeated idempotency key returns the task it made first."""
        item = {"task_type": task_type, "params": params, "dependant_on": list(dependant_on)}
        result = self._create(project_id, user_id, [item], [idempotency_key], meta)
        task_id = result.pop("task_ids")[0]
        return {**result, "task_id": task_id, "task_type": task_type}

    def create_tasks(
        self,
        project_id: object,
        user_id: str | None,
        tasks: Sequence[Mapping[str, Any]],
        idempotency_key: str | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """Several tasks in one save. Items: `task_type`, `params`, `dependant_on` (task
        ids, or the index of an earlier item). Item i's key is `key:i`."""
        if not tasks:
            raise ValidationError("a batch needs at least one task")
        keys = [f"{idempotency_key}:{i}" if idempotency_key else None for i in range(len(tasks))]
        return self._create(project_id, user_id, list(tasks), keys, meta)

    def _create(
        self,
        project_id: object,
        user_id: str | None,
        items: list[Mapping[str, Any]],
        keys: list[str | None],
        meta: CommandMeta | None,
    ) -> Result:
        binding = request_binding(meta)

        def decide() -> Any:
            batch = self._batch()
            project = self._owned_project(batch, project_id, user_id)
            made: list[Task] = []
            replayed = 0
            for item, key in zip(items, keys, strict=True):
                known = batch.find(task_id_for(project.owner_id, key)) if key else None
                if isinstance(known, Task):
                    check_bound(known, binding, key)
                    replayed += 1
                    made.append(known)
                else:
                    made.append(self._create_one(batch, project, item, key, made, binding))
            result: Result = {"task_ids": [str(t.id) for t in made]}
            if len(made) == 1:
                result["status"] = made[0].status
            if replayed:
                result["replayed"] = replayed == len(made)
            return batch.changed, result

        return self._command(_user_meta(user_id, meta), decide)

    def _create_one(
        self,
        batch: Batch,
        project: Project,
        item: Mapping[str, Any],
        key: str | None,
        earlier: list[Task],
        binding: str | None = None,
    ) -> Task:
        if not isinstance(item, Mapping):
            raise InvalidParamsError(f"a task is an object (got {item!r})")
        name = item.get("task_type")
        task_type = self._resolve_type(batch, str(name))
        if task_type.is_orchestrator:
            raise InvalidParamsError(
                f"{task_type.name} is started by create_travel or create_join_clips"
            )
        params = item.get("params")
        params = {} if params is None else params
        if not isinstance(params, Mapping):
            raise InvalidParamsError(f"params must be an object (got {params!r})")
        deps = [
            earlier[d].id
            if isinstance(d, int) and not isinstance(d, bool) and 0 <= d < len(earlier)
            else d
            for d in item.get("dependant_on") or ()
        ]
        task = self._new_task(
            batch,
            project,
            task_type,
            params,
            dependant_on=deps,
            task_id=task_id_for(project.owner_id, key) if key else None,
            key=key,
            request_hash=binding if key else None,
        )
        self._check_references(batch, project, task)
        return task

    def _check_references(self, batch: Batch, project: Project, task: Task) -> None:
        """Every id a task's params name exists in its project, so completion can route."""
        if task.orchestrator_task_id is not None:
            raise InvalidParamsError(
                f"params name orchestrator {task.orchestrator_task_id}: only an orchestrator "
                "spawns its children"
            )
        for ident in (task.based_on, task.parent_generation_id):
            if ident is not None:
                self._generation_in(batch, ident, project.id)
        for name in GENERATION_PARAMS:
            if task.params.get(name) is not None:
                as_uuid(task.params[name], f"params.{name}")
                self._generation_in(batch, task.params[name], project.id)
        if task.shot_id is not None:
            self._shot_in(batch, task.shot_id, project.id)
        if task.params.get("regenerate_generation_id") is not None:
            target = self._generation_in(batch, task.params["regenerate_generation_id"], project.id)
            target.link_task(task.id)

    # -- the catalogue ---------------------------------------------------------
    def register_task_type(
        self, task_type: TaskType | Mapping[str, Any], meta: CommandMeta | None = None
    ) -> Result:
        spec = task_type if isinstance(task_type, TaskType) else TaskType.from_dict(task_type)
        return self._on_catalogue(meta, lambda c: c.register(spec), spec.name)

    def deactivate_task_type(self, name: str, meta: CommandMeta | None = None) -> Result:
        return self._on_catalogue(meta, lambda c: c.deactivate(name), name)

    def activate_task_type(self, name: str, meta: CommandMeta | None = None) -> Result:
        return self._on_catalogue(meta, lambda c: c.activate(name), name)

    def task_types(self) -> list[TaskType]:
        """The active task types (defaults plus what was registered)."""
        catalogue = self._batch().find(CATALOGUE_ID)
        if isinstance(catalogue, TaskTypeCatalogue):
            return catalogue.active()
        return sorted((t for t in DEFAULT_CATALOGUE.values() if t.is_active), key=lambda t: t.name)

    def _on_catalogue(self, meta: CommandMeta | None, change: Any, name: str) -> Result:
        def decide() -> Any:
            batch = self._batch()
            catalogue = batch.find(CATALOGUE_ID)
            if not isinstance(catalogue, TaskTypeCatalogue):
                catalogue = batch.add(TaskTypeCatalogue())
            change(catalogue)
            return batch.changed, {"task_type": name}

        return self._command(meta, decide)

    # -- claiming --------------------------------------------------------------
    def claim_next(
        self,
        worker_id: str,
        run_type: str,
        current_model: str | None,
        candidate_ids: Iterable[object],
        now: datetime | None = None,
        meta: CommandMeta | None = None,
    ) -> Result | None:
        """Claims the best eligible candidate (a bounded page read from the claim queue),
        re-checked on the aggregates and ordered by `domain.claiming.order_for_worker`:
        over five minutes waiting first, then the worker's loaded model, then oldest.
        None when nothing here may be claimed now."""
        if run_type not in RUN_TYPES:
            raise ValidationError(
                f"run_type must be one of {', '.join(RUN_TYPES)} (got {run_type!r})"
            )
        ids = [as_uuid(c, "task id") for c in candidate_ids]
        at = now or _now()

        def decide() -> Any:
            batch = self._batch(at)
            worker_for(batch, worker_id, credential_of(meta))
            task = self._pick(batch, ids, run_type, current_model)
            if task is None:
                return [], {"task_id": None}
            self._change(batch, task, task.claim, worker_id, at)
            return batch.changed, self._claimed(task)

        for _ in range(CLAIM_ROUNDS):
            try:
                result = self._command(_worker_meta(worker_id, meta), decide)
            except (ConcurrencyConflictError, TaskNotClaimableError):
                continue
            return result if result.get("task_id") else None
        return None

    def claim_task(
        self,
        task_id: object,
        worker_id: str,
        now: datetime | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """Claims this task, or says why not (not Queued, no credits, not claimable)."""
        at = now or _now()

        def decide() -> Any:
            batch = self._batch(at)
            worker_for(batch, worker_id, credential_of(meta))
            task = self._task(batch, task_id)
            self._require_claimable(batch, task)
            self._change(batch, task, task.claim, worker_id, at)
            return batch.changed, self._claimed(task)

        return self._command(_worker_meta(worker_id, meta), decide)

    def _pick(self, batch: Batch, ids: list[Any], run_type: str, model: str | None) -> Task | None:
        queued = [t for t in map(batch.find, ids) if isinstance(t, Task) and t.status == QUEUED]
        owners = {t.owner_id for t in queued}
        found = next_for_worker(
            [self._candidate(batch, t) for t in queued],
            run_type=run_type,
            worker_model=model,
            now=batch.at,
            balances={o: self._balance(batch, o) for o in owners},
            in_progress={o: self._running(batch, o) for o in owners},
        )
        return None if found is None else self._task(batch, found.task_id)

    def _candidate(self, batch: Batch, task: Task) -> Candidate:
        statuses = {d: t.status for d in task.dependant_on if isinstance(t := batch.find(d), Task)}
        return Candidate.of(task, statuses)

    def _require_claimable(self, batch: Batch, task: Task) -> None:
        if task.status != QUEUED:
            raise InvalidTransitionError(
                task.id, task.status, IN_PROGRESS, task.allowed_transitions
            )
        balance = self._balance(batch, task.owner_id)
        if balance <= 0:
            raise InsufficientCreditsError(
                f"the owner of task {task.id} has a balance of {balance} credits"
            )
        reason = ineligibility(
            self._candidate(batch, task),
            run_type=task.run_type,
            balances={task.owner_id: balance},
            in_progress={task.owner_id: self._running(batch, task.owner_id)},
        )
        if reason:
            raise TaskNotClaimableError(f"task {task.id} cannot be claimed: {reason}")

    @staticmethod
    def _claimed(task: Task) -> Result:
        return {
            "task_id": str(task.id),
            "task_type": task.task_type,
            "params": task.params,
            "project_id": str(task.project_id),
            "owner_id": task.owner_id,
            "run_type": task.run_type,
            "model_name": task.model_name,
            "attempts": task.attempts,
        }

    # -- status changes --------------------------------------------------------
    def report_progress(
        self,
        task_id: object,
        step: int,
        total: int,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        def act(batch: Batch, task: Task) -> None:
            task.report_progress(step, total)

        self._own_worker(worker_id, meta)
        result = self._on_task(_worker_meta(worker_id, meta), task_id, None, worker_id, act)
        return {**result, "progress": [step, total]}

    def reset_task_start(
        self,
        task_id: object,
        worker_id: str | None = None,
        now: datetime | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """The worker loaded its model: billing time starts now."""

        def act(batch: Batch, task: Task) -> None:
            task.reset_start(batch.at)

        self._own_worker(worker_id, meta)
        return self._on_task(_worker_meta(worker_id, meta), task_id, None, worker_id, act, now)

    def fail_task(
        self,
        task_id: object,
        error: str,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        def act(batch: Batch, task: Task) -> None:
            self._change(batch, task, task.fail, error, batch.at)

        self._own_worker(worker_id, meta)
        return self._on_task(_worker_meta(worker_id, meta), task_id, None, worker_id, act)

    def requeue_task(
        self,
        task_id: object,
        reason: str | None = None,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """Back to the queue with attempts + 1; the third attempt fails (and cascades)."""

        def act(batch: Batch, task: Task) -> None:
            self._change(batch, task, task.requeue, reason, batch.at)

        self._own_worker(worker_id, meta)
        return self._on_task(_worker_meta(worker_id, meta), task_id, None, worker_id, act)

    def release_task(
        self,
        task_id: object,
        reason: str | None = None,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """Back to the queue with attempts unchanged: the holding worker is shutting down
        gracefully and hands back what it did not finish (a crash uses `requeue_task`)."""

        def act(batch: Batch, task: Task) -> None:
            self._change(batch, task, task.release, reason, batch.at)

        self._own_worker(worker_id, meta)
        return self._on_task(_worker_meta(worker_id, meta), task_id, None, worker_id, act)

    def cancel_task(
        self,
        task_id: object,
        user_id: str | None,
        reason: str | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        def act(batch: Batch, task: Task) -> None:
            self._change(batch, task, task.cancel, batch.at, reason)

        return self._on_task(_user_meta(user_id, meta), task_id, user_id, None, act)

    def cancel_pending(
        self, project_id: object, user_id: str | None, meta: CommandMeta | None = None
    ) -> Result:
        """Cancels every Queued task of the project (their families follow)."""

        def decide() -> Any:
            batch = self._batch()
            project = self._owned_project(batch, project_id, user_id)
            workload = batch.find(Workload.id_for(project.owner_id))
            queued = workload.queued_in(project.id) if isinstance(workload, Workload) else []
            for task in [self._task(batch, t) for t in queued]:
                if task.status == QUEUED:
                    self._change(batch, task, task.cancel, batch.at, "cancel pending")
            changed = batch.status_changes()
            return batch.changed, {
                "project_id": str(project.id),
                "changed": changed,
                "cancelled": sum(s == CANCELLED for s in changed.values()),
            }

        return self._command(_user_meta(user_id, meta), decide)

    def update_status(
        self,
        task_id: object,
        status: str,
        error_message: str | None = None,
        worker_id: str | None = None,
        output_location: str | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """The generic PATCH: any status the transition table allows from the current one."""
        if status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)} (got {status!r})")
        self._own_worker(worker_id, meta)
        task = self._task(self._batch(), task_id)
        if status not in task.allowed_transitions:
            raise InvalidTransitionError(task.id, task.status, status, task.allowed_transitions)
        if status == IN_PROGRESS:
            if not worker_id:
                raise ValidationError("In Progress needs the worker_id that claims the task")
            return self.claim_task(task_id, worker_id, meta=meta)
        if status == COMPLETE:
            return self.complete_task(task_id, output_location, worker_id=worker_id, meta=meta)
        if status == FAILED:
            return self.fail_task(task_id, error_message or "Failed", worker_id, meta)
        if status == CANCELLED:
            return self.cancel_task(
                task_id, None, error_message, meta=_worker_meta(worker_id, meta)
            )
        return self.requeue_task(task_id, error_message, worker_id, meta)

    # -- completion ------------------------------------------------------------
    def complete_task(
        self,
        task_id: object,
        output_location: str | None,
        thumbnail_url: str | None = None,
        result_data: Mapping[str, Any] | None = None,
        worker_id: str | None = None,
        meta: CommandMeta | None = None,
    ) -> Result:
        """Complete, its result routed into the gallery and its cost charged, in one save;
        refused (nothing stored) unless the task is In Progress."""

        def act(batch: Batch, task: Task) -> Result:
            self._change(
                batch,
                task,
                task.complete,
                output_location,
                batch.at,
                thumbnail_url=thumbnail_url,
                result_data=result_data,
            )
            routed = Routing(
                batch, task, self._type_of(batch, task), self._single_segment(batch, task)
            ).route()
            routed["cost"] = str(self._bill(batch, task))
            self._settle_orchestrator(batch, task)
            return routed

        self._own_worker(worker_id, meta)
        return self._on_task(_worker_meta(worker_id, meta), task_id, None, worker_id, act)

    def _single_segment(self, batch: Batch, task: Task) -> bool:
        root = batch.find(task.orchestrator_task_id) if task.orchestrator_task_id else None
        return isinstance(root, Task) and root.child_task_ids == [task.id]

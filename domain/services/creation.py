"""Task creation and the task-type catalogue's verbs.

A batch of tasks is one save; each item names a catalogue type (orchestrators are
started by `orchestration.py`), its params and its dependencies. A repeated idempotency
key answers the task it made first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from uuid import UUID

from domain.catalogue import (
    CATALOGUE_ID,
    DEFAULT_CATALOGUE,
    TaskType,
    TaskTypeCatalogue,
)
from domain.errors import InvalidParamsError, ValidationError
from domain.metadata import CommandMeta
from domain.project import Project
from domain.services.base import Decision, as_uuid
from domain.services.lifecycle import (
    Batch,
    TaskLifecycle,
    check_bound,
    request_binding,
    task_id_for,
)
from domain.services.taskresults import TaskCreated, TasksCreated
from domain.services.written import TaskTypeWritten
from domain.task import Task

GENERATION_PARAMS = ("child_generation_id", "regenerate_generation_id")


def user_meta(user_id: str | None, meta: CommandMeta | None) -> CommandMeta | None:
    return meta or (CommandMeta.for_user(user_id) if user_id else None)


class TaskCreation(TaskLifecycle):
    """Creating tasks, and registering, deactivating and activating task types."""

    def create_task(
        self,
        project_id: UUID,
        user_id: str | None,
        task_type: str,
        params: Mapping[str, object],
        dependant_on: Iterable[UUID | int] = (),
        idempotency_key: str | None = None,
        meta: CommandMeta | None = None,
    ) -> TaskCreated:
        """A Queued task; a repeated idempotency key returns the task it made first."""
        item = {"task_type": task_type, "params": params, "dependant_on": list(dependant_on)}
        made = self._create(project_id, user_id, [item], [idempotency_key], meta)
        return TaskCreated(
            task_id=made.task_ids[0],
            task_type=task_type,
            status=made.status,
            position=made.position,
            replayed=made.replayed,
        )

    def create_tasks(
        self,
        project_id: UUID,
        user_id: str | None,
        tasks: Sequence[Mapping[str, object]],
        idempotency_key: str | None = None,
        meta: CommandMeta | None = None,
    ) -> TasksCreated:
        """Several tasks in one save. Items: `task_type`, `params`, `dependant_on` (task
        ids, or the index of an earlier item). Item i's key is `key:i`."""
        if not tasks:
            raise ValidationError("a batch needs at least one task")
        keys = [f"{idempotency_key}:{i}" if idempotency_key else None for i in range(len(tasks))]
        return self._create(project_id, user_id, list(tasks), keys, meta)

    def _create(
        self,
        project_id: UUID,
        user_id: str | None,
        items: list[Mapping[str, object]],
        keys: list[str | None],
        meta: CommandMeta | None,
    ) -> TasksCreated:
        binding = request_binding(meta)

        def decide() -> Decision[TasksCreated]:
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
            return batch.changed, TasksCreated(
                task_ids=tuple(t.id for t in made),
                status=made[0].status if len(made) == 1 else None,
                replayed=replayed == len(made),
                some_replayed=0 < replayed < len(made),
            )

        return self._command(user_meta(user_id, meta), decide)

    def _create_one(
        self,
        batch: Batch,
        project: Project,
        item: Mapping[str, object],
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
            for d in _listed(item.get("dependant_on"))
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
        self, task_type: TaskType | Mapping[str, object], meta: CommandMeta | None = None
    ) -> TaskTypeWritten:
        spec = task_type if isinstance(task_type, TaskType) else TaskType.from_dict(task_type)
        return self._on_catalogue(meta, lambda c: c.register(spec), spec.name)

    def deactivate_task_type(self, name: str, meta: CommandMeta | None = None) -> TaskTypeWritten:
        return self._on_catalogue(meta, lambda c: c.deactivate(name), name)

    def activate_task_type(self, name: str, meta: CommandMeta | None = None) -> TaskTypeWritten:
        return self._on_catalogue(meta, lambda c: c.activate(name), name)

    def task_types(self) -> list[TaskType]:
        """The active task types (defaults plus what was registered)."""
        catalogue = self._batch().find(CATALOGUE_ID)
        if isinstance(catalogue, TaskTypeCatalogue):
            return catalogue.active()
        return sorted((t for t in DEFAULT_CATALOGUE.values() if t.is_active), key=lambda t: t.name)

    def _on_catalogue(
        self,
        meta: CommandMeta | None,
        change: Callable[[TaskTypeCatalogue], object],
        name: str,
    ) -> TaskTypeWritten:
        def decide() -> Decision[TaskTypeWritten]:
            batch = self._batch()
            catalogue = batch.find(CATALOGUE_ID)
            if not isinstance(catalogue, TaskTypeCatalogue):
                catalogue = batch.add(TaskTypeCatalogue())
            change(catalogue)
            return batch.changed, TaskTypeWritten(task_type=name)

        return self._command(meta, decide)


def _listed(value: object) -> Sequence[object]:
    """A task's `dependant_on`: a list (of ids, or of indexes into its batch), or none."""
    if not value:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidParamsError(f"dependant_on must be a list (got {value!r})")
    return value

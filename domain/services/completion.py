"""Where a completed task's output lands: the seed's completion routing, in order.

1. orchestration category or `skip_generation` → no generation;
2. the generation named by `regenerate_generation_id` lists this task → a
   `regenerated` primary variant;
3. `based_on` (unless `create_as_generation`) → a variant on the source, of the
   catalogue's variant type, primary only if `is_primary`;
4. `child_generation_id` → a variant on that child (primary unless `is_primary` is false);
5. `travel_stitch` / `join_final_stitch` with a parent → a primary variant on the parent;
6. `parent_generation_id` → a child generation at child_order | segment_index |
   join_index (a second result for that slot becomes a variant of the child); a run
   with a single segment also gives the parent a variant;
7. otherwise a standalone generation with an `original` primary variant, in the
   task's shot when it names one (positioned only if it asks).
A target that is gone (deleted, other project) falls through to the next step, so
finished work is never refused for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID, uuid4

from domain import families
from domain.catalogue import VIDEO, TaskType
from domain.errors import ValidationError
from domain.generation import MEDIA_TYPES, ORIGINAL, Generation
from domain.services.lifecycle import Batch, TaskLifecycle
from domain.shot import Shot
from domain.task import Task

# A type no family declares (a catalogue row registered at run time) is taken for a
# video maker when its name says so, as before families declared their media.
VIDEO_WORDS = ("segment", "stitch", "join", "animate", "video")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".m4v")
DEFAULT_VARIANT_TYPE = "generated"


# Where a completed task's result went: `TaskCompleted`'s fields, as JSON.
Routed = dict[str, object]


def media_type_of(task: Task) -> str:
    """What the worker said (media_type, content_type), else what the task makes."""
    data = task.result_data
    if data.get("media_type") in MEDIA_TYPES:
        return str(data["media_type"])
    content = str(data.get("content_type") or "")
    if content.startswith(("video/", "image/")):
        return content.split("/")[0]
    declared = families.task_types().get(task.task_type)
    if declared is not None and declared.media == VIDEO:
        return "video"
    if declared is None and any(word in task.task_type for word in VIDEO_WORDS):
        return "video"
    location = (task.output_location or "").lower().split("?")[0]
    return "video" if location.endswith(VIDEO_SUFFIXES) else "image"


def _uuid(value: object) -> UUID | None:
    if value is None or isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        return None


@dataclass
class Routing:
    """One completed task's result, made inside the completing command's batch."""

    batch: Batch
    task: Task
    task_type: TaskType
    single_segment: bool = False

    def route(self) -> Routed:
        params = self.task.params
        if self.task.is_orchestrator or params.get("skip_generation"):
            return {"result": "none"}
        if not self.task.output_location:
            raise ValidationError(
                f"task {self.task.id} ({self.task.task_type}) makes media: "
                "complete it with an output location"
            )
        for step in (
            self._regenerated,
            self._on_source,
            self._on_child,
            self._on_parent,
            self._as_child,
        ):
            routed = step()
            if routed is not None:
                return routed
        return self._standalone()

    # -- the steps -------------------------------------------------------------
    def _regenerated(self) -> Routed | None:
        target = self._live(self.task.params.get("regenerate_generation_id"))
        if target is None or self.task.id not in target.task_ids:
            return None
        return self._variant(target, "regenerated", True, "regenerated")

    def _on_source(self) -> Routed | None:
        if self.task.params.get("create_as_generation"):
            return None
        source = self._live(self.task.based_on)
        if source is None:
            return None
        return self._variant(
            source, self._variant_type, bool(self.task.params.get("is_primary")), "variant"
        )

    def _on_child(self) -> Routed | None:
        child = self._live(self.task.params.get("child_generation_id"))
        if child is None:
            return None
        primary = self.task.params.get("is_primary", True) is not False
        return self._variant(child, self._variant_type, primary, "child_variant")

    def _on_parent(self) -> Routed | None:
        parent = self._live(self.task.parent_generation_id)
        if self.task.task_type not in families.stitches() or parent is None:
            return None
        return self._variant(parent, self._variant_type, True, "parent_variant")

    def _as_child(self) -> Routed | None:
        parent = self._live(self.task.parent_generation_id)
        if parent is None:
            return None
        order = self._child_order(parent)
        existing = self._live(parent.children.get(order))
        if existing is not None:
            routed = self._variant(existing, self._variant_type, True, "child_variant")
        else:
            routed = self._new_child(parent, order)
        if self.single_segment:
            routed["parent_variant_id"] = self._variant(
                parent, self._variant_type, True, "parent_variant"
            )["variant_id"]
        return routed

    def _standalone(self) -> Routed:
        source = self._live(self.task.based_on)
        generation = self._new_generation(based_on=source.id if source else None)
        routed = self._original(generation, "generation")
        shot = self._shot()
        if shot is not None:
            asks = self.task.params.get("add_in_position") or self.task.params.get("with_position")
            member = shot.add(uuid4(), generation.id, generation.media_type, bool(asks))
            routed.update(
                shot_id=str(shot.id),
                shot_generation_id=str(member.id),
                timeline_frame=member.timeline_frame,
            )
        return routed

    # -- helpers ---------------------------------------------------------------
    @property
    def _variant_type(self) -> str:
        return self.task_type.variant_type or DEFAULT_VARIANT_TYPE

    def _child_order(self, parent: Generation) -> int:
        links = self.task.links
        for value in (links.child_order, links.segment_index, links.join_index):
            if value is not None:
                return value
        return len(parent.children)

    def _new_child(self, parent: Generation, order: int) -> Routed:
        child = self._new_generation(parent_generation_id=parent.id, child_order=order)
        parent.add_child(child.id, order)
        return {**self._original(child, "child"), "parent_generation_id": str(parent.id)}

    def _new_generation(
        self,
        *,
        based_on: UUID | None = None,
        parent_generation_id: UUID | None = None,
        child_order: int | None = None,
    ) -> Generation:
        generation = Generation.start(
            self.task.project_id,
            media_type_of(self.task),
            self.batch.at,
            params=self._params(),
            task_id=self.task.id,
            based_on=based_on,
            parent_generation_id=parent_generation_id,
            child_order=child_order,
        )
        return self.batch.add(generation)

    def _original(self, generation: Generation, kind: str) -> Routed:
        return self._variant(generation, ORIGINAL, True, kind)

    def _variant(
        self, generation: Generation, variant_type: str, primary: bool, kind: str
    ) -> Routed:
        generation.link_task(self.task.id)
        variant = generation.add_variant(
            uuid4(),
            self.task.output_location or "",
            self.batch.at,
            variant_type=variant_type,
            thumbnail_url=self.task.thumbnail_url,
            params=self._params(),
            make_primary=primary,
            viewed=False,
            source_task_id=self.task.id,
        )
        return {
            "result": kind,
            "generation_id": str(generation.id),
            "variant_id": str(variant.id),
            "variant_type": variant_type,
        }

    def _params(self) -> dict[str, object]:
        params = {
            **self.task.params,
            "source_task_id": str(self.task.id),
            "tool_type": self.task.params.get("tool_type") or self.task.task_type,
        }
        if self.task.result_data.get("content_type"):
            params["content_type"] = self.task.result_data["content_type"]
        return params

    def _live(self, ident: object) -> Generation | None:
        """A generation of the task's project that still shows, or None."""
        key = _uuid(ident)
        found = self.batch.find(key) if key else None
        if (
            not isinstance(found, Generation)
            or found.deleted
            or found.project_id != self.task.project_id
        ):
            return None
        return found

    def _shot(self) -> Shot | None:
        found = self.batch.find(self.task.shot_id) if self.task.shot_id else None
        if not isinstance(found, Shot) or found.deleted or found.project_id != self.task.project_id:
            return None
        return found


class TaskCompletion(TaskLifecycle):
    """Completing a task inside a decision: Complete, routed, charged once, its run settled."""

    def _complete_in(
        self,
        batch: Batch,
        task: Task,
        output_location: str | None,
        thumbnail_url: str | None = None,
        result_data: Mapping[str, object] | None = None,
    ) -> Routed:
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

    def _single_segment(self, batch: Batch, task: Task) -> bool:
        root = batch.find(task.orchestrator_task_id) if task.orchestrator_task_id else None
        return isinstance(root, Task) and root.child_task_ids == [task.id]

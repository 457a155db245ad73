"""Orchestrated runs: travel between images, join clips.

One command saves the whole run: the orchestrator (In Progress at once, held by
`system:orchestrator`: it needs no worker), the parent video generation (no
variants yet), one segment per consecutive pair chained by `dependant_on`, and
the stitch after the last segment. A travel over two images is a single segment
and needs no stitch: its result becomes the parent's variant directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from uuid import UUID, uuid4

from domain.catalogue import FAMILIES
from domain.errors import GenerationNotFoundError, InvalidParamsError
from domain.generation import Generation
from domain.metadata import CommandMeta
from domain.project import Project
from domain.services.base import Decision
from domain.services.lifecycle import (
    ORCHESTRATOR_WORKER,
    Batch,
    TaskLifecycle,
    check_bound,
    request_binding,
    task_id_for,
)
from domain.services.taskresults import RunStarted
from domain.task import Task, model_name_of

# List params of a run that hold one value per segment, and the name each segment uses.
PER_SEGMENT = {
    "base_prompts": "base_prompt",
    "negative_prompts": "negative_prompt",
    "prompts": "prompt",
    "segment_frames": "segment_frames",
    "frame_overlap": "frame_overlap",
    "segment_seeds": "seed",
}
RUN_ONLY = (
    "orchestrator_details",
    "shot_id",
    "image_urls",
    "clip_urls",
    "image_generation_ids",
    "clip_generation_ids",
)


@dataclass(frozen=True)
class Source:
    """One input of a run: an image (travel) or a clip (join), by location."""

    generation_id: UUID | None
    location: str


@dataclass(frozen=True)
class RunKind:
    family: str
    index_key: str
    start_key: str
    end_key: str
    inputs_key: str
    stitch_always: bool

    @property
    def types(self) -> tuple[str, str, str]:
        orchestrator, segment, stitch = FAMILIES[self.family]
        return orchestrator, segment, stitch


TRAVEL = RunKind(
    "travel_between_images",
    "segment_index",
    "start_image_url",
    "end_image_url",
    "image_urls",
    stitch_always=False,
)
JOIN = RunKind(
    "join_clips", "join_index", "start_video_url", "end_video_url", "clip_urls", stitch_always=True
)


def segment_params(params: Mapping[str, object], index: int) -> dict[str, object]:
    """The run's params as one segment sees them: per-segment lists indexed (the last
    value repeats when a list is short), run-level inputs left out."""
    out = {k: v for k, v in params.items() if k not in PER_SEGMENT and k not in RUN_ONLY}
    for plural, single in PER_SEGMENT.items():
        values = params.get(plural)
        if isinstance(values, list) and values:
            out[single] = values[min(index, len(values) - 1)]
    model = model_name_of(params)
    if model:
        out.setdefault("model_name", model)
    return out


class OrchestrationServices(TaskLifecycle):
    def create_travel(
        self,
        project_id: UUID,
        user_id: str | None,
        *,
        shot_id: UUID | None = None,
        image_generation_ids: Sequence[UUID] | None = None,
        image_urls: Sequence[str] | None = None,
        params: Mapping[str, object] | None = None,
        idempotency_key: str | None = None,
        meta: CommandMeta | None = None,
    ) -> RunStarted:
        """A video travelling through the shot's positioned images (or the images given)."""

        def sources(batch: Batch, project: Project) -> list[Source]:
            if shot_id is not None:
                shot = self._shot_in(batch, shot_id, project.id)
                # A deleted generation has left its shots (the memberships come
                # back with a restore): the run travels through the live ones.
                ids: Sequence[UUID] = [
                    m.generation_id
                    for m in shot.positioned_images()
                    if not batch.load(m.generation_id, Generation, GenerationNotFoundError).deleted
                ]
                return self._sources(batch, project, ids, None, "image")
            return self._sources(batch, project, image_generation_ids, image_urls, "image")

        extra = {"shot_id": str(shot_id)} if shot_id is not None else {}
        return self._start_run(
            TRAVEL,
            project_id,
            user_id,
            sources,
            {**(params or {}), **extra},
            idempotency_key,
            meta,
            shot_id,
        )

    def create_join_clips(
        self,
        project_id: UUID,
        user_id: str | None,
        *,
        clip_generation_ids: Sequence[UUID] | None = None,
        clip_urls: Sequence[str] | None = None,
        params: Mapping[str, object] | None = None,
        idempotency_key: str | None = None,
        meta: CommandMeta | None = None,
    ) -> RunStarted:
        """One video joining the clips in order, a generated transition between each pair."""

        def sources(batch: Batch, project: Project) -> list[Source]:
            return self._sources(batch, project, clip_generation_ids, clip_urls, "clip")

        return self._start_run(
            JOIN, project_id, user_id, sources, dict(params or {}), idempotency_key, meta, None
        )

    # -- the run ---------------------------------------------------------------
    def _start_run(
        self,
        kind: RunKind,
        project_id: UUID,
        user_id: str | None,
        sources: Callable[[Batch, Project], list[Source]],
        params: dict[str, object],
        key: str | None,
        meta: CommandMeta | None,
        shot_id: UUID | None,
    ) -> RunStarted:
        meta = meta or (CommandMeta.for_user(user_id) if user_id else None)
        binding = request_binding(meta)

        def decide() -> Decision[RunStarted]:
            batch = self._batch()
            project = self._owned_project(batch, project_id, user_id)
            known = batch.find(task_id_for(project.owner_id, key)) if key else None
            if isinstance(known, Task):
                check_bound(known, binding, key)
                return [], replace(self._run_summary(batch, known), replayed=True)
            inputs = sources(batch, project)
            if len(inputs) < 2:
                raise InvalidParamsError(
                    f"{kind.family} needs at least 2 inputs (got {len(inputs)})"
                )
            orchestrator = self._spawn_run(batch, project, kind, inputs, params, key, binding)
            if shot_id is not None:
                shot = self._shot_in(batch, shot_id, project.id)
                parent_id = orchestrator.parent_generation_id
                shot.add(uuid4(), parent_id, "video", with_position=False)  # type: ignore[arg-type]
            return batch.changed, self._run_summary(batch, orchestrator)

        return self._command(meta, decide)

    def _spawn_run(
        self,
        batch: Batch,
        project: Project,
        kind: RunKind,
        inputs: list[Source],
        params: dict[str, object],
        key: str | None,
        binding: str | None = None,
    ) -> Task:
        orchestrator_type, segment_type, stitch_type = (
            self._resolve_type(batch, name) for name in kind.types
        )
        orchestrator_id = task_id_for(project.owner_id, key) if key else uuid4()
        run_id = uuid4().hex
        parent = batch.add(
            Generation.start(project.id, "video", batch.at, params=params, task_id=orchestrator_id)
        )
        links = {"parent_generation_id": str(parent.id), "orchestrator_run_id": run_id}
        details = {
            **_details(params.get("orchestrator_details")),
            **links,
            kind.inputs_key: [s.location for s in inputs],
            "num_new_segments_to_generate": len(inputs) - 1,
        }
        orchestrator = self._new_task(
            batch,
            project,
            orchestrator_type,
            {**params, **links, "orchestrator_details": details},
            task_id=orchestrator_id,
            key=key,
            request_hash=binding if key else None,
        )
        self._change(batch, orchestrator, orchestrator.claim, ORCHESTRATOR_WORKER, batch.at)
        links["orchestrator_task_id_ref"] = str(orchestrator.id)
        children: list[Task] = []
        for i, (start, end) in enumerate(pairwise(inputs)):
            child_params = {
                **segment_params(params, i),
                **links,
                kind.index_key: i,
                "num_segments": len(inputs) - 1,
                kind.start_key: start.location,
                kind.end_key: end.location,
                "start_generation_id": _str(start.generation_id),
                "end_generation_id": _str(end.generation_id),
            }
            children.append(
                self._new_task(
                    batch,
                    project,
                    segment_type,
                    child_params,
                    dependant_on=[c.id for c in children[-1:]],
                )
            )
        if kind.stitch_always or len(children) > 1:
            stitch_params = {
                **segment_params(params, len(children)),
                **links,
                "num_segments": len(children),
                kind.inputs_key: details[kind.inputs_key],
                "segment_task_ids": [str(c.id) for c in children],
            }
            children.append(
                self._new_task(
                    batch, project, stitch_type, stitch_params, dependant_on=[children[-1].id]
                )
            )
        orchestrator.spawn([c.id for c in children])
        return orchestrator

    def _sources(
        self,
        batch: Batch,
        project: Project,
        ids: Sequence[UUID] | None,
        urls: Sequence[str] | None,
        what: str,
    ) -> list[Source]:
        if ids:
            return [self._source(batch, project, ident, what) for ident in ids]
        if urls:
            if any(not isinstance(u, str) or not u.strip() for u in urls):
                raise InvalidParamsError(f"{what} urls must be non-empty strings (got {urls!r})")
            return [Source(None, u.strip()) for u in urls]
        raise InvalidParamsError(f"name the {what}s: by generation ids or by urls")

    def _source(self, batch: Batch, project: Project, ident: UUID, what: str) -> Source:
        generation = self._generation_in(batch, ident, project.id)
        if not generation.location:
            raise InvalidParamsError(f"{what} {generation.id} has no media yet")
        return Source(generation.id, generation.location)

    def _run_summary(self, batch: Batch, orchestrator: Task) -> RunStarted:
        children = self._children(batch, orchestrator)
        _, segment_type, _ = next(v for v in FAMILIES.values() if v[0] == orchestrator.task_type)
        segments = tuple(c.id for c in children if c.task_type == segment_type)
        stitch = tuple(c.id for c in children if c.task_type != segment_type)
        return RunStarted(
            orchestrator_task_id=orchestrator.id,
            run_id=orchestrator.run_id,
            parent_generation_id=orchestrator.parent_generation_id,
            segment_task_ids=segments,
            stitch_task_id=stitch[0] if stitch else None,
            task_ids=(orchestrator.id, *segments, *stitch),
        )


def _str(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _details(value: object) -> dict[str, object]:
    """A run's `orchestrator_details` as given: an object, or none."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidParamsError(f"orchestrator_details must be an object (got {value!r})")
    return dict(value)

"""Commands decide on this process's cached aggregates; the save checks what they read.

`here` and `elsewhere` are two Studios on one real (embedded) PostgreSQL log, each with
its own aggregate cache, as two server processes are. `elsewhere` changes something a
command of `here` only reads, after `here` cached it: the command must give the answer
fresh state gives, and write nothing a stale copy decided.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.errors import (
    DeletedError,
    GenerationNotFoundError,
    ProjectNotFoundError,
    UnknownTaskTypeError,
)
from domain.generation import Generation
from domain.metadata import CommandMeta
from domain.project import Project
from domain.repository import ReadSet
from domain.services.cached import decided_on_cache
from domain.studio import Studio


@pytest.fixture(scope="module")
def here(studio: Studio) -> Studio:
    return studio


@pytest.fixture(scope="module")
def elsewhere(database: Database, schema: str) -> Iterator[Studio]:
    app = build_studio(database, schema, pool_size=2)
    yield app
    app.close()


class QueryCount:
    """How many reads of the log (events and snapshots) `studio`'s loads make."""

    def __init__(self, studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = 0
        repository: Any = studio.repository
        for store in (repository.event_store, repository.snapshot_store):
            monkeypatch.setattr(store, "get", self._counted(store.get))

    def _counted(self, get: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return get(*args, **kwargs)

        return counted


def project_of(studio: Studio, owner: str) -> UUID:
    studio.ensure_user(owner)
    return studio.create_project(owner, "Film").project_id


def upload(studio: Studio, project_id: UUID, owner: str, **kw: Any) -> UUID:
    return studio.create_generation(project_id, owner, "/m/a.png", **kw).generation_id


def generations_in_log(studio: Studio, project_id: UUID) -> int:
    """Generations of the project recorded in the log (their creation events)."""
    created = studio.recorder.select_notifications(
        None, 1_000_000, topics=["darkroom.generation.created"]
    )
    return sum(1 for n in created if project_id.hex in n.state.decode())


def test_a_command_on_cached_aggregates_makes_no_read_of_the_log(
    here: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id = project_of(here, "cached-1")
    first = upload(here, project_id, "cached-1")  # the project is cached from here on
    queries = QueryCount(here, monkeypatch)

    here.star_generation(first, "cached-1", True)
    upload(here, project_id, "cached-1")

    assert queries.reads == 0


def test_a_generation_is_not_made_in_a_project_another_process_deleted(
    here: Studio, elsewhere: Studio
) -> None:
    project_id = project_of(here, "cached-2")
    upload(here, project_id, "cached-2")  # caches the project here
    elsewhere.delete_project(project_id, "cached-2")

    with pytest.raises(ProjectNotFoundError):
        upload(here, project_id, "cached-2")

    assert generations_in_log(here, project_id) == 1  # the stale decision wrote nothing


def test_a_generation_is_not_based_on_one_another_process_deleted(
    here: Studio, elsewhere: Studio
) -> None:
    project_id = project_of(here, "cached-3")
    source = upload(here, project_id, "cached-3")
    upload(here, project_id, "cached-3", based_on=source)  # caches the source here
    elsewhere.delete_generation(source, "cached-3")

    with pytest.raises(GenerationNotFoundError):
        upload(here, project_id, "cached-3", based_on=source)

    assert generations_in_log(here, project_id) == 2


def test_a_task_type_another_process_deactivated_is_refused_here(
    here: Studio, elsewhere: Studio
) -> None:
    project_id = project_of(here, "cached-4")
    # No catalogue yet: this process remembers it as absent, and creates tasks from the
    # default types without looking again.
    here.create_task(project_id, "cached-4", "image_upscale", {"image": "/m/a.png"})
    elsewhere.deactivate_task_type("image_upscale")
    try:
        with pytest.raises(UnknownTaskTypeError, match="image_upscale"):
            here.create_task(project_id, "cached-4", "image_upscale", {"image": "/m/b.png"})
    finally:
        elsewhere.activate_task_type("image_upscale")

    assert here.create_task(project_id, "cached-4", "image_upscale", {"image": "/m/c.png"})


def test_a_project_restored_elsewhere_takes_uploads_here_again(
    here: Studio, elsewhere: Studio
) -> None:
    project_id = project_of(here, "cached-5")
    here.delete_project(project_id, "cached-5")  # here caches it deleted
    elsewhere.restore_project(project_id, "cached-5")

    upload(here, project_id, "cached-5")

    assert generations_in_log(here, project_id) == 1


def test_a_repeated_idempotency_key_still_replays_the_first_answer(
    here: Studio, elsewhere: Studio
) -> None:
    project_id = project_of(here, "cached-6")
    meta = CommandMeta.for_user("cached-6", idempotency_key="upload-once")
    first = here.create_generation(project_id, "cached-6", "/m/a.png", meta=meta)
    elsewhere.update_project(project_id, "cached-6", name="Renamed")  # the read moved on

    again = here.create_generation(project_id, "cached-6", "/m/a.png", meta=meta)

    assert again.replayed and again.generation_id == first.generation_id
    assert generations_in_log(here, project_id) == 1


def test_an_aggregate_changed_elsewhere_is_changed_here_from_its_fresh_state(
    here: Studio, elsewhere: Studio
) -> None:
    project_id = project_of(here, "cached-7")
    here.update_project(project_id, "cached-7", name="One")  # cached here at this version
    elsewhere.update_project(project_id, "cached-7", settings={"fps": 24})

    here.update_project(project_id, "cached-7", name="Two")

    project = elsewhere.repository.get(project_id)
    assert isinstance(project, Project)
    assert (project.name, project.settings) == ("Two", {"fps": 24})


def test_an_older_copy_read_of_an_aggregate_the_save_writes_is_checked_as_a_read(
    here: Studio,
) -> None:
    project_id = project_of(here, "cached-8")
    older = here.repository.get(project_id)
    here.update_project(project_id, "cached-8", name="Newer")
    newer = here.repository.get(project_id)
    reads = ReadSet(cached=True)
    reads.note(project_id, newer.version)
    newer.update("Newest", None, None)
    assert reads.to_check([newer]) == []  # its version is checked by the insert

    reads.note(project_id, older.version)

    assert reads.to_check([newer]) == [(project_id, older.version)]


# A change that is a no-op on the cached copy hands its aggregate to the save with no new
# event: nothing inserted checks it, so its read must be sent (session 9 review).
def starred(studio: Studio, generation_id: UUID) -> bool:
    generation = studio.repository.get(generation_id)
    assert isinstance(generation, Generation)
    return bool(generation.starred)


def test_a_star_after_another_process_unstarred_is_not_lost(
    here: Studio, elsewhere: Studio
) -> None:
    project_id = project_of(here, "noop-1")
    generation_id = here.create_generation(project_id, "noop-1", "/m/a.png").generation_id
    here.star_generation(generation_id, "noop-1", True)  # cached here: starred
    elsewhere.star_generation(generation_id, "noop-1", False)  # unstarred elsewhere

    here.star_generation(generation_id, "noop-1", True)  # the user stars it again here

    assert starred(elsewhere, generation_id)  # the log must say starred


def test_a_star_of_a_generation_deleted_elsewhere_is_refused_as_deleted(
    here: Studio, elsewhere: Studio
) -> None:
    project_id = project_of(here, "noop-2")
    generation_id = here.create_generation(project_id, "noop-2", "/m/a.png").generation_id
    here.star_generation(generation_id, "noop-2", True)  # cached here: starred, live
    elsewhere.delete_generation(generation_id, "noop-2")

    with pytest.raises(DeletedError):
        here.star_generation(generation_id, "noop-2", True)


def test_a_task_created_under_a_key_is_no_longer_taken_for_absent(here: Studio) -> None:
    project_id = project_of(here, "noop-3")
    made = here.create_tasks(
        project_id,
        "noop-3",
        [{"task_type": "image_upscale", "params": {"image_url": "/m/a.png"}}],
        idempotency_key="k-1",
    )
    (task_id,) = made.task_ids

    assert not here.repository.known_absent(task_id)  # type: ignore[attr-defined]


def test_a_part_given_up_on_cached_copies_leaves_the_callers_earlier_reads_checked(
    here: Studio,
) -> None:
    project_id = project_of(here, "given-up")
    repository: Any = here.repository
    with repository.deciding(True) as reads:
        repository.get(project_id)  # the caller's own read, before the part it gives up
        assert decided_on_cache(repository, datetime.now(UTC), lambda batch: None) is None

    assert not reads.cached
    assert project_id in dict(reads.to_check([]))

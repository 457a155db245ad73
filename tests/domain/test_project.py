from __future__ import annotations

import pytest

from domain.errors import DeletedError, EmptyNameError, ValidationError
from domain.project import Project


def test_a_project_needs_a_name() -> None:
    with pytest.raises(EmptyNameError):
        Project.start("alice", "")


def test_an_unknown_aspect_ratio_is_refused() -> None:
    with pytest.raises(ValidationError, match="7:5"):
        Project.start("alice", "Film", "7:5")


def test_shots_are_placed_one_after_another() -> None:
    project = Project.start("alice", "Film")
    assert [project.take_shot_position() for _ in range(3)] == [0, 1, 2]


def test_deleting_a_project_is_soft_and_restorable() -> None:
    project = Project.start("alice", "Film")
    project.delete()
    with pytest.raises(DeletedError):
        project.update(name="Other")
    project.restore()
    project.update(name="Other")
    assert project.name == "Other" and not project.deleted


def test_a_version_one_created_event_is_upcast_on_replay() -> None:
    from eventsourcing.application import Application
    from eventsourcing.persistence import StoredEvent

    app: Application = Application()
    project = Project.start("alice", "Film", "1:1")
    stored = app.mapper.to_stored_event(project.collect_events()[0])
    state = app.mapper.transcoder.decode(stored.state)
    state.pop("class_version")
    state.pop("settings")
    state["aspect"] = state.pop("aspect_ratio")
    old = StoredEvent(stored.originator_id, 1, stored.topic, app.mapper.transcoder.encode(state))
    replayed = app.mapper.to_domain_event(old).mutate(None)
    assert (replayed.name, replayed.aspect_ratio, replayed.settings) == ("Film", "1:1", {})


def test_shots_are_ordered_every_live_shot_exactly_once() -> None:
    from uuid import uuid4

    from domain.errors import ShotOrderError

    project = Project.start("alice", "Film")
    a, b, c = uuid4(), uuid4(), uuid4()
    for shot_id in (a, b, c):
        project.take_shot_position(shot_id)
    assert project.known_shot_ids == [a, b, c]
    for wrong, why in (
        ([a, b], "missing"),
        ([a, b, c, a], "more than once"),
        ([a, b, c, uuid4()], "not a live shot"),
    ):
        with pytest.raises(ShotOrderError, match=why):
            project.order_shots(wrong, {a, b, c})
    project.order_shots([c, a], {a, c})  # b deleted: left out
    assert isinstance(project.collect_events()[-1], Project.ShotsOrdered)
    project.delete()
    with pytest.raises(DeletedError):
        project.order_shots([c, a], {a, c})


def test_a_version_one_shot_placed_event_is_upcast_without_a_shot_id() -> None:
    from eventsourcing.application import Application
    from eventsourcing.persistence import StoredEvent

    app: Application = Application()
    project = Project.start("alice", "Film")
    project.take_shot_position()
    stored = app.mapper.to_stored_event(project.collect_events()[1])
    state = app.mapper.transcoder.decode(stored.state)
    state.pop("class_version")
    state.pop("shot_id")
    old = StoredEvent(stored.originator_id, 2, stored.topic, app.mapper.transcoder.encode(state))
    event = app.mapper.to_domain_event(old)
    assert (event.position, event.shot_id) == (0, None)  # type: ignore[attr-defined]

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

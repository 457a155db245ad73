"""The task that made a generation (`Studio.task_of_generation`)."""

from __future__ import annotations

import uuid

import pytest

from domain.errors import GenerationNotFoundError, TaskNotFoundError
from domain.studio import Studio


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def test_the_task_that_made_a_generation(studio: Studio) -> None:
    from tests.domain.test_task_completion import run
    from tests.domain.test_task_services import funded, queue

    owner, project = funded(studio)
    upload = studio.create_generation(project, owner, "/m/a.png")["generation_id"]
    with pytest.raises(TaskNotFoundError):
        studio.task_of_generation(upload, owner)
    task_id = queue(studio, project, owner, params={"prompt": "a fox"})
    made = run(studio, task_id)["generation_id"]
    assert str(studio.task_of_generation(made, owner).id) == task_id
    with pytest.raises(GenerationNotFoundError):
        studio.task_of_generation(made, user())  # another user's generation
    studio.delete_generation(made, owner)
    with pytest.raises(GenerationNotFoundError):
        studio.task_of_generation(made, owner)

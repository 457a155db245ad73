"""The handler registry: a task type runs the one function registered for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inference.errors import DuplicateHandlerError, UnsupportedTaskError
from inference.handlers import DiffusersBackend, register_handler, unregister_handler
from inference.handlers.results import Job, Result


def solid_picture(backend: DiffusersBackend, job: Job) -> Result:
    from PIL import Image

    job.progress(1, 1)
    return backend.image_result([Image.new("RGB", (8, 4), "red")], seed=0)


@pytest.fixture
def solid_colour() -> Iterator[str]:
    register_handler("solid_colour", solid_picture)
    yield "solid_colour"
    unregister_handler("solid_colour")


@pytest.fixture(scope="module")
def bare_backend() -> DiffusersBackend:
    return DiffusersBackend({}, device="cpu")


def test_a_registered_handler_runs_its_task_type(
    bare_backend: DiffusersBackend, solid_colour: str
) -> None:
    seen: list[tuple[int, int]] = []
    result = bare_backend.run(solid_colour, {}, {}, progress=lambda i, n: seen.append((i, n)))
    assert solid_colour in bare_backend.task_types
    assert (result.width, result.height, result.seed) == (8, 4, 0)
    assert seen == [(1, 1)]


def test_an_unregistered_task_type_is_refused_by_name(bare_backend: DiffusersBackend) -> None:
    register_handler("solid_colour", solid_picture)
    unregister_handler("solid_colour")
    assert "solid_colour" not in bare_backend.task_types
    with pytest.raises(UnsupportedTaskError, match="solid_colour"):
        bare_backend.run("solid_colour", {}, {})


def test_a_task_type_keeps_its_one_handler(solid_colour: str) -> None:
    register_handler(solid_colour, solid_picture)  # the same function again is no conflict
    with pytest.raises(DuplicateHandlerError, match="image_generation"):
        register_handler("image_generation", solid_picture)

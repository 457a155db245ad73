"""Which function runs each task type: the one place a family's backend handler is named.

A handler is a plain function of the backend and the task:

    @handler("image_generation", "qwen_image")
    def text_to_image(backend: DiffusersBackend, job: Job) -> Result: ...

`DiffusersBackend.run` looks the task type up here. The modules of this package
register the built-in families when `inference.handlers` is imported; a test (or a
plug-in) adds its own with `register_handler` and takes it away with
`unregister_handler`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from inference.errors import DuplicateHandlerError
from inference.handlers.results import Job, Result

if TYPE_CHECKING:
    from inference.handlers.core import DiffusersBackend

Handler = Callable[["DiffusersBackend", Job], Result]
H = TypeVar("H", bound=Handler)

_HANDLERS: dict[str, Handler] = {}
#: Task type → its handler (read-only; change it through the functions below).
HANDLERS: Mapping[str, Handler] = MappingProxyType(_HANDLERS)


def register_handler(task_type: str, run: Handler) -> None:
    """Make `run` the handler of `task_type`; a type has one handler at a time."""
    present = _HANDLERS.get(task_type)
    if present is not None and present is not run:
        raise DuplicateHandlerError(
            f"task type {task_type!r} is already run by {present.__qualname__}"
        )
    _HANDLERS[task_type] = run


def unregister_handler(task_type: str) -> None:
    """Forget a task type's handler (tests take back what they registered)."""
    _HANDLERS.pop(task_type, None)


def handler(*task_types: str) -> Callable[[H], H]:
    """Decorator: the function runs these task types."""

    def register(run: H) -> H:
        for task_type in task_types:
            register_handler(task_type, run)
        return run

    return register

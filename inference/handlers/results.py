"""What a backend gives back, and the protocol its callers depend on.

Callers (the Ray actor, the HTTP reference worker, the outcome recorder) import
only this module: it needs neither torch nor diffusers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from inference import frames as fr
from inference.params import Inputs

Progress = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]


def no_progress(step: int, total: int) -> None:
    """Default progress sink."""


def never_cancel() -> bool:
    """Default cancellation probe."""
    return False


@dataclass(frozen=True)
class Job:
    """One task as its handler sees it: params, input media, and the progress sink and
    cancellation probe to pass to the pipeline's step hook."""

    task_type: str
    params: Mapping[str, Any]
    inputs: Inputs
    progress: Progress = no_progress
    should_cancel: ShouldCancel = never_cancel


@dataclass(frozen=True)
class Media:
    """One produced file: its bytes and what a gallery needs to show it."""

    data: bytes
    content_type: str
    width: int
    height: int
    frames: int
    thumbnail: bytes
    fps: float | None = None

    @property
    def suffix(self) -> str:
        return ".mp4" if self.content_type == fr.MP4 else ".png"

    @property
    def is_video(self) -> bool:
        return self.content_type == fr.MP4


@dataclass(frozen=True)
class Result:
    """What a task produced: one media file, or several for an image batch.

    The first output's fields are repeated as properties because almost every
    task has exactly one output.
    """

    outputs: tuple[Media, ...]
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ValueError("a result needs at least one output")

    @property
    def media(self) -> Media:
        return self.outputs[0]

    @property
    def data(self) -> bytes:
        return self.media.data

    @property
    def content_type(self) -> str:
        return self.media.content_type

    @property
    def width(self) -> int:
        return self.media.width

    @property
    def height(self) -> int:
        return self.media.height

    @property
    def frames(self) -> int:
        return self.media.frames

    @property
    def thumbnail(self) -> bytes:
        return self.media.thumbnail


class Backend(Protocol):
    """Runs one task. Must call `progress(i, n)` as work advances and stop with
    `TaskCancelledError` soon after `should_cancel()` turns true."""

    def run(
        self,
        task_type: str,
        params: Mapping[str, Any],
        inputs: Inputs,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Result: ...

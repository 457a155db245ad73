"""Inference errors: what a backend or media store refuses, by name.

The dispatcher turns these into domain commands (cancelled → Cancelled with no
charge; bad input → Failed without retry; anything else → Failed/requeued by the
attempt rules). They carry only strings so they pickle across Ray workers.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every error raised by `inference`. `code` is a stable machine name."""

    code = "inference_error"
    #: Whether running the same task again could succeed (a crash may; bad input won't).
    retryable = True


class TaskCancelledError(InferenceError):
    """The caller asked to stop; raised from inside the denoising loop."""

    code = "cancelled"
    retryable = False


class UnsupportedTaskError(InferenceError):
    """No backend handler for this task type."""

    code = "unsupported_task"
    retryable = False


class InvalidInputError(InferenceError):
    """A required input or parameter is missing or malformed."""

    code = "invalid_input"
    retryable = False


class ModelNotConfiguredError(InferenceError):
    """The task needs a model that the backend was not given."""

    code = "model_not_configured"
    retryable = False


class MediaNotFoundError(InferenceError):
    """A media location that no stored object answers to."""

    code = "media_not_found"
    retryable = False


class InvalidMediaLocationError(InferenceError):
    """A location outside the store (wrong prefix, `..`, absolute path tricks)."""

    code = "invalid_media_location"
    retryable = False


class DuplicateHandlerError(InferenceError):
    """A second backend handler registered for a task type that already has one."""

    code = "duplicate_handler"
    retryable = False

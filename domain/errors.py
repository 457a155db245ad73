"""Domain errors: every refusal names what was wrong and with which value.

The edge maps these classes to HTTP statuses and close codes in one place
(`realtime/errors.py`); nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable


class DomainError(Exception):
    """Base of every refusal the domain makes. `code` is a stable machine name."""

    code = "domain_error"


class ValidationError(DomainError):
    code = "invalid"


class EmptyNameError(ValidationError):
    code = "empty_name"


class NegativeFrameError(ValidationError):
    code = "negative_frame"


class ShotOrderError(ValidationError):
    """A shot order that is not every live shot of the project exactly once."""

    code = "invalid_shot_order"


class InvalidParamsError(ValidationError):
    code = "invalid_params"


class UnknownTaskTypeError(ValidationError):
    code = "unknown_task_type"


class NotFoundError(DomainError):
    """An id that does not exist, or exists but belongs to somebody else."""

    code = "not_found"

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind
        self.ident = ident


class ProjectNotFoundError(NotFoundError):
    def __init__(self, ident: object) -> None:
        super().__init__("project", ident)


class ShotNotFoundError(NotFoundError):
    def __init__(self, ident: object) -> None:
        super().__init__("shot", ident)


class GenerationNotFoundError(NotFoundError):
    def __init__(self, ident: object) -> None:
        super().__init__("generation", ident)


class VariantNotFoundError(NotFoundError):
    def __init__(self, ident: object) -> None:
        super().__init__("variant", ident)


class MembershipNotFoundError(NotFoundError):
    def __init__(self, ident: object) -> None:
        super().__init__("shot membership", ident)


class TaskNotFoundError(NotFoundError):
    def __init__(self, ident: object) -> None:
        super().__init__("task", ident)


class UserNotFoundError(NotFoundError):
    def __init__(self, ident: object) -> None:
        super().__init__("user", ident)


class TokenNotFoundError(NotFoundError):
    def __init__(self, ident: object) -> None:
        super().__init__("token", ident)


class WorkerNotFoundError(NotFoundError):
    """A worker id unknown, or registered to another credential (nobody learns which)."""

    def __init__(self, ident: object) -> None:
        super().__init__("worker", ident)


class IdempotencyKeyReusedError(DomainError):
    """An idempotency key sent again with another route or another request body."""

    code = "idempotency_key_reused"


class ForbiddenError(DomainError):
    """The actor may not do this (used where hiding existence is not required)."""

    code = "forbidden"


class ConflictError(DomainError):
    code = "conflict"


class ConcurrencyConflictError(ConflictError):
    """Optimistic-concurrency retries ran out."""

    code = "concurrency_conflict"


class IdempotencyKeyInFlightError(ConflictError):
    """The first request with this idempotency key is still running: retry later."""

    code = "idempotency_key_in_flight"


class DeletedError(ConflictError):
    code = "deleted"


class OriginalVariantDeletionError(ConflictError):
    code = "original_variant_protected"

    def __init__(self, variant_id: object) -> None:
        super().__init__(f"variant {variant_id} is the original and cannot be deleted")
        self.variant_id = variant_id


class InvalidTransitionError(ConflictError):
    """A task status change the state machine refuses."""

    code = "invalid_transition"

    def __init__(
        self, task_id: object, current: str, requested: str, allowed: Iterable[str]
    ) -> None:
        self.task_id = task_id
        self.current_status = current
        self.requested_status = requested
        self.allowed_transitions = sorted(allowed)
        super().__init__(
            f"task {task_id} is {current!r}; cannot become {requested!r} "
            f"(allowed: {', '.join(self.allowed_transitions) or 'none'})"
        )


class InsufficientCreditsError(DomainError):
    code = "insufficient_credits"


class TaskNotInProgressError(ConflictError):
    """Progress or a timing change for a task that is not running."""

    code = "task_not_in_progress"


class TaskNotClaimableError(ConflictError):
    """A Queued task that may not be claimed now (dependencies, owner's limit, run type)."""

    code = "task_not_claimable"


class TaskHeldElsewhereError(ConflictError):
    """A worker acted on a task it does not hold (requeued, or claimed by another)."""

    code = "task_held_elsewhere"


class DependencyFailedError(ConflictError):
    """A new task would wait for a task that already Failed or was Cancelled."""

    code = "dependency_failed"


class ResourceNotFoundError(NotFoundError):
    """A resource (a LoRA file or URL) unknown, deleted, or another user's."""

    def __init__(self, ident: object) -> None:
        super().__init__("resource", ident)


class InvalidLoraError(ValidationError):
    """Bytes that are not a safetensors LoRA state dict (the message says what is wrong)."""

    code = "invalid_lora"


class ListLengthsError(ValidationError):
    """A list that must hold one value for all items, or exactly one per item, does not
    (a task family's input, e.g. one prompt per travel segment)."""

    def __init__(self, what: str, n: int, count: int) -> None:
        self.what, self.n, self.count = what, n, count
        super().__init__(f"{what} has {n} items; give 1 or {count}")


class BatchTooLargeError(ValidationError):
    """A batch family's request would queue more tasks than one request may."""

    def __init__(self, count: int, cap: int) -> None:
        self.count, self.cap = count, cap
        super().__init__(f"prompts * images_per_prompt is {count}; at most {cap}")

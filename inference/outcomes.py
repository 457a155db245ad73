"""A finished run, turned into one domain command.

- done: the outputs go to the media store (file + PNG thumbnail) and the task is
  completed with their locations; the domain routes the result into the gallery
  and charges for it, once.
- cancelled: the domain already says Cancelled (that is why the run was stopped):
  nothing to do, nothing charged. A run the dispatcher stopped because it is
  shutting down is released: back to the queue, no attempt spent.
- lost (the actor died under it) and errors that running again could cure: the
  task is requeued; the domain counts the attempt and fails it at the third.
- errors that running again cannot cure (bad input, unsupported type): failed.

A command the domain refuses because the task moved on meanwhile (cancelled,
requeued by the sweeper, held by another worker) is not an error here: the
result is dropped. A refused completion deletes the files stored for it (nothing
will ever name them); any other error leaves them, as the command may have landed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from domain.errors import ConflictError, DomainError, NotFoundError
from inference.handlers.results import Result
from inference.media import MediaStore
from inference.ports import TaskCommands

log = logging.getLogger("darkroom.inference")

DONE = "done"
CANCELLED = "cancelled"
LOST = "lost"
ERROR = "error"
MAX_ERROR = 2000


@dataclass
class Timing:
    """Wall-clock marks of one task through the dispatcher (seconds since the epoch)."""

    task_id: str
    task_type: str
    slot: str
    claim_started: float = 0.0
    claimed: float = 0.0
    sent: float = 0.0
    actor_started: float = 0.0
    actor_finished: float = 0.0
    received: float = 0.0
    settled: float = 0.0
    outcome: str = ""
    command: str = ""

    @property
    def overhead(self) -> float:
        """Dispatcher time around the actor's run: claim → actor start, actor end → event."""
        return (self.actor_started - self.claim_started) + (self.settled - self.actor_finished)

    @property
    def total(self) -> float:
        return self.settled - self.claim_started


@dataclass
class Finished:
    """How a run ended, as seen by the dispatcher."""

    task_id: str
    kind: str
    slot: str
    output: dict[str, Any] | None = None
    error: BaseException | None = None
    stop_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stored: Stored | None = None


@dataclass(frozen=True)
class Stored:
    """Where a finished run's files went."""

    location: str
    thumbnail: str
    more: tuple[str, ...] = ()

    @property
    def locations(self) -> tuple[str, ...]:
        return (self.location, self.thumbnail, *self.more)


def describe(error: BaseException) -> str:
    """`Type: message` of the underlying error (Ray wraps actor errors), bounded."""
    cause = getattr(error, "cause", None) or error
    text = f"{type(cause).__name__}: {cause}".strip()
    first_line = text.splitlines()[0] if text else type(cause).__name__
    return first_line[:MAX_ERROR]


def retryable(error: BaseException) -> bool:
    cause = getattr(error, "cause", None) or error
    return bool(getattr(cause, "retryable", True))


class Settler:
    """Applies `Finished` outcomes to the domain for one worker id."""

    def __init__(self, tasks: TaskCommands, media: MediaStore, worker_id: str) -> None:
        self.tasks = tasks
        self.media = media
        self.worker_id = worker_id

    def settle(self, finished: Finished) -> str:
        """Sends the command for this outcome; returns its name ("" when none)."""
        try:
            return self._settle(finished)
        except (ConflictError, NotFoundError) as refused:
            log.info("task %s moved on; %s dropped: %s", finished.task_id, finished.kind, refused)
            return "dropped"

    def _settle(self, f: Finished) -> str:
        if f.kind == DONE and f.output is not None:
            return self._complete(f)
        if f.kind == CANCELLED:
            if f.stop_reason == "domain":
                return ""
            if f.stop_reason == "shutdown":  # a graceful hand-back spends no attempt
                self.tasks.release_task(
                    f.task_id, "dispatcher shutting down", worker_id=self.worker_id
                )
                return "release"
            self.tasks.requeue_task(
                f.task_id, f"run stopped ({f.stop_reason or 'cancelled'})", worker_id=self.worker_id
            )
            return "requeue"
        error = f.error or RuntimeError(f.kind)
        if f.kind == LOST:
            reason = f"actor {f.slot} died mid-task ({describe(error)})"
            self.tasks.requeue_task(f.task_id, reason, worker_id=self.worker_id)
            return "requeue"
        if retryable(error):
            self.tasks.requeue_task(f.task_id, describe(error), worker_id=self.worker_id)
            return "requeue"
        self.tasks.fail_task(f.task_id, describe(error), worker_id=self.worker_id)
        return "fail"

    def store(self, f: Finished) -> Stored:
        """Puts the outputs in the media store (file, PNG thumbnail, any further files)."""
        assert f.output is not None  # only done runs are stored
        result: Result = f.output["result"]
        media = result.media
        return Stored(
            self.media.put(media.data, media.suffix, media.content_type),
            self.media.put(media.thumbnail, ".png", "image/png"),
            tuple(self.media.put(m.data, m.suffix, m.content_type) for m in result.outputs[1:]),
        )

    def _complete(self, f: Finished) -> str:
        assert f.output is not None  # narrowed by the caller
        result: Result = f.output["result"]
        media = result.media
        stored = f.stored or self.store(f)
        location, thumbnail = stored.location, stored.thumbnail
        data: dict[str, Any] = {
            "content_type": media.content_type,
            "media_type": "video" if media.is_video else "image",
            "width": media.width,
            "height": media.height,
            "frames": media.frames,
            "seed": result.seed,
            "actor": f.slot,
            "run_seconds": round(f.output["finished"] - f.output["started"], 4),
            **f.extra,
        }
        if media.fps:
            data["fps"] = media.fps
        if stored.more:
            data["outputs"] = [location, *stored.more]
        try:
            self.tasks.complete_task(
                f.task_id,
                location,
                thumbnail_url=thumbnail,
                result_data=data,
                worker_id=self.worker_id,
            )
        except DomainError as refused:  # final: nothing sends this completion again
            self.discard(f.task_id, stored, refused)
            if isinstance(refused, (ConflictError, NotFoundError)):
                raise  # the task moved on: `settle` drops the outcome
            # the result cannot be routed: say so on the task
            self.tasks.fail_task(
                f.task_id, f"completion refused: {refused}"[:MAX_ERROR], worker_id=self.worker_id
            )
            return "fail"
        return "complete"

    def discard(self, task_id: str, stored: Stored, refused: DomainError) -> None:
        """Deletes the files of a completion the domain refused: no event will name them.

        Only a refusal is certain: after any other error (the database unreachable) the
        completion may have been recorded all the same, so its files stay.
        """
        deleted = 0
        for location in stored.locations:
            try:
                self.media.delete(location)
                deleted += 1
            except Exception:  # an orphaned file is no reason to stop recording outcomes
                log.exception("task %s: deleting %s failed", task_id, location)
        log.info(
            "task %s: completion refused (%s); %d of its %d files deleted",
            task_id,
            refused,
            deleted,
            len(stored.locations),
        )


# How long results whose files are being stored hold back the next claim: their command
# should go first, but a slow upload must not stall claiming.
STORE_GRACE = 0.05


class Recorder:
    """Finished runs on their way into the domain.

    Files are stored on a small thread pool (an upload may be slow), or, with `inline`
    (a local store: a put is a file write), at once on the thread that hands the outcome
    over (the loop, which sends the command next: no hand-off to a thread and back). The
    domain command is sent from the dispatcher's loop thread (`record_ready`), between
    its claims, and only once the files are stored. Claims, completions and heartbeats
    all change the worker's aggregate, so sending them one after another costs less than
    letting them conflict and retry.
    """

    def __init__(
        self,
        settler: Settler,
        threads: int,
        recorded: Callable[[Finished, Timing], None],
        inline: bool = False,
    ) -> None:
        self.settler = settler
        self.recorded = recorded
        self.inline = inline
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # handed over, command not sent yet
        self._ready: deque[tuple[Finished, Timing]] = deque()
        self._storing: dict[str, float] = {}  # task id → when storing its files began
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="dispatcher-store")

    def hand_over(self, finished: Finished, timing: Timing) -> None:
        with self._lock:
            self._pending.add(finished.task_id)
            if finished.kind != DONE:
                self._ready.append((finished, timing))
                return
            self._storing[finished.task_id] = time.monotonic()
        if self.inline:
            self._store(finished, timing)
        else:
            self._pool.submit(self._store, finished, timing)

    def _store(self, finished: Finished, timing: Timing) -> None:
        try:
            finished.stored = self.settler.store(finished)
        except Exception as error:  # a full disk or an unreachable bucket: try again later
            log.exception("storing the result of task %s failed", finished.task_id)
            finished.kind, finished.error = ERROR, error
        with self._lock:
            self._storing.pop(finished.task_id, None)
            self._ready.append((finished, timing))

    def record_ready(self) -> None:
        """Sends the command of every outcome whose files are stored (loop thread)."""
        while True:
            with self._lock:
                if not self._ready:
                    return
                finished, timing = self._ready.popleft()
            try:
                timing.command = self.settler.settle(finished)
            except Exception:
                log.exception("recording the outcome of task %s failed", finished.task_id)
                timing.command = "error"
            timing.settled = time.time()
            timing.outcome = finished.kind
            self.recorded(finished, timing)
            with self._lock:
                self._pending.discard(finished.task_id)

    def ready(self) -> bool:
        with self._lock:
            return bool(self._ready)

    def storing(self, now: float | None = None) -> bool:
        """Whether files are being stored (begun less than `STORE_GRACE` ago, given `now`)."""
        with self._lock:
            if now is None:
                return bool(self._storing)
            return any(now - began < STORE_GRACE for began in self._storing.values())

    def task_ids(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Other slow work off the loop (progress commands)."""
        self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

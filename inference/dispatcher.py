"""The dispatcher: claims tasks for idle actors, runs them, reports what became of them.

One loop thread multiplexes everything through `ray.wait`: the runs in flight,
the `ready()` probes of starting or restarting actors, and a long poll on the
progress relay. Each turn it

1. claims work only for idle actors, one task per actor (`inference.claiming`:
   the claim queue's candidates for the model the actor holds, every rule
   re-checked by `claim_next`, the next page read while the actor runs);
2. reads the task's input media and calls `actor.run` (no waiting);
3. heartbeats listing every task it holds (`exhaustive`: a claim whose answer it
   lost goes back to the queue): every `heartbeat_interval`, and every
   `cancel_check_interval` while it holds any, because the heartbeat's `stop` list
   is how a cancellation reaches a running task (`ray.cancel`, within one step);
4. forwards progress: the first report one `progress_interval` after the claim (a
   shorter task needs none), then at most one command per task per interval;
5. turns finished runs into domain commands (`inference.outcomes`): files go to
   the media store on a small thread pool (an upload must not stall the loop; a
   local store's writes, cheaper than the hand-off, are done on the loop), then the
   loop sends complete / fail / requeue / release itself, before its next claim.
   Every command that touches this worker's `Worker` aggregate (claims,
   completions, heartbeats) thus goes out one at a time instead of conflicting.
   A completion on a slot left idle also claims that slot's next task in the same
   command (`inference.chaining`), which starts at once.

An actor that dies under a task: the task is requeued (attempts + 1), the slot
is probed until `ready()` answers again, and only then gets work. If the
dispatcher itself dies, its heartbeats stop and the sweeper (run here too, for
every worker) requeues what it held. A graceful `stop()` is no failure: nothing is
claimed from then on (a claim that raced it is released at once), the runs still
going at its deadline are stopped and their tasks released (back to the queue,
attempts unchanged), so restarts and deploys never fail a task.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inference import metrics
from inference.actors import BUSY, IDLE, ActorPool, Slot
from inference.chaining import ChainingCommands
from inference.claiming import Claimer
from inference.defaults import DispatcherConfig
from inference.errors import TaskCancelledError, UnsupportedTaskError
from inference.inputs import Reader, media_reader, read_inputs
from inference.media import MediaStore
from inference.models import TASK_MODELS
from inference.outcomes import (
    CANCELLED,
    DONE,
    ERROR,
    LOST,
    Finished,
    Recorder,
    Settler,
    Timing,
)
from inference.ports import (
    CandidateSource,
    OutputLookup,
    TaskCommands,
)

log = logging.getLogger("darkroom.inference")


# How often the loop looks for results whose files are stored, while some are being stored.
STORE_POLL = 0.0005


def default_worker_id() -> str:
    return f"ray:{socket.gethostname()}:{os.getpid()}"


@dataclass(eq=False)
class Running:
    """A task on an actor."""

    task_id: str
    task_type: str
    slot: Slot
    ref: Any
    timing: Timing
    stop_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Dispatcher:
    """Runs claimed tasks on an `ActorPool`; see the module docstring."""

    def __init__(
        self,
        tasks: TaskCommands,
        candidates: CandidateSource,
        pool: ActorPool,
        media: MediaStore,
        output_of: OutputLookup,
        *,
        worker_id: str | None = None,
        config: DispatcherConfig | None = None,
        read: Reader | None = None,
    ) -> None:
        # Commands one at a time; a completion may claim its slot's next task (chaining.py).
        self.chain = ChainingCommands(tasks)
        self.tasks: TaskCommands = self.chain
        self.candidates = candidates
        self.pool = pool
        self.media = media
        self.output_of = output_of
        self.worker_id = worker_id or default_worker_id()
        self.config = config or DispatcherConfig()
        self.read = read or media_reader(media)
        pages = self.config.candidate_pages
        self.claims = Claimer(self.tasks, candidates, self.worker_id, self.config.run_types, pages)
        self.chain.claimer = self.claims
        inline = self.config.store_inline and bool(getattr(media, "local", False))
        settler = Settler(self.tasks, media, self.worker_id)
        self.recorder = Recorder(settler, self.config.settle_threads, self._recorded, inline)
        self.running: dict[Any, Running] = {}
        self.timings: deque[Timing] = deque(maxlen=self.config.timings_kept)
        self.counts: Counter[str] = Counter()
        self.error: BaseException | None = None
        self._held_lock = threading.Lock()
        self._progress_sent: dict[str, float] = {}
        self._drain: Any = None
        self._next_poll = 0.0
        self._next_beat = 0.0
        self._next_sweep = time.monotonic() + (self.config.sweep_interval or 0)
        self._stopping = threading.Event()
        self._stop_deadline = 0.0
        self._thread: threading.Thread | None = None
        metrics.track(self)

    # -- life ------------------------------------------------------------------------
    def start(self) -> None:
        """Run the loop on a daemon thread (the pool must be started)."""
        self._thread = threading.Thread(target=self.run_forever, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self, drain: float = 5.0) -> None:
        """Stop claiming; let running tasks finish for up to `drain` seconds, then stop them
        (they are released: back to the queue without spending an attempt) and wait until
        every outcome is recorded."""
        self._stop_deadline = time.monotonic() + drain
        self._stopping.set()
        self.chain.stopping.set()
        if self._thread is not None:
            self._thread.join()
        self.recorder.shutdown()

    def run_forever(self) -> None:
        try:
            while not (self._stopping.is_set() and self._finished_stopping()):
                self.step()
        except BaseException as error:  # kept for `healthy`, and logged now
            self.error = error
            log.exception("dispatcher loop stopped")
            raise

    @property
    def stopping(self) -> bool:
        """Whether `stop` began: nothing is claimed from then on."""
        return self._stopping.is_set()

    @property
    def healthy(self) -> bool:
        return self.error is None and (self._thread is None or self._thread.is_alive())

    def held(self) -> list[str]:
        """Task ids this dispatcher holds: running, or being recorded."""
        with self._held_lock:
            running = [r.task_id for r in self.running.values()]
        return running + self.recorder.task_ids()

    # -- one turn --------------------------------------------------------------------
    def step(self) -> None:
        self.recorder.record_ready()
        now = time.monotonic()
        self.pool.tick(now)
        self._maybe_heartbeat(now)
        self._maybe_sweep(now)
        if self._stopping.is_set():
            self._stop_overdue(now)
        elif self.pool.idle() and now >= self._next_poll and not self.recorder.storing(now):
            self._fill()
        self._wait_and_collect()

    def _wait_and_collect(self) -> None:
        import ray

        if self._drain is None and self.pool.relay is not None:
            self._drain = self.pool.relay.drain.remote(self.config.relay_poll)
        probes = self.pool.probes()
        refs = [*self.running, *probes, *([self._drain] if self._drain is not None else [])]
        timeout = self._timeout()
        if not refs:
            time.sleep(timeout)
            return
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            if ref in self.running:
                self._collect(self.running[ref])
            elif ref in probes:
                self.pool.probe_answered(probes[ref])
                self._next_poll = 0.0
            else:
                self._progress(ref)

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [
            self._next_beat,
            self._next_sweep if self.config.sweep_interval else None,
            self.pool.next_probe_at(),
            self._next_poll if self.pool.idle() and not self._stopping.is_set() else None,
        ]
        soonest = min((d for d in due if d is not None), default=now + self.config.max_wait)
        if self.recorder.ready():
            return 0.0
        if self.recorder.storing():
            soonest = min(soonest, now + STORE_POLL)
        return max(0.0, min(soonest - now, self.config.max_wait))

    # -- claiming --------------------------------------------------------------------
    def _fill(self) -> None:
        """One claim per idle actor, while the queue has work its model runs."""
        idle = (slot for slot in self.pool.idle() if not self._stopping.is_set())
        claimed_any = self.claims.fill(idle, self._start)
        self._next_poll = 0.0 if claimed_any else time.monotonic() + self.config.poll_interval

    def _start(self, slot: Slot, claimed: Mapping[str, Any], claim_started: float) -> None:
        task_id, task_type = str(claimed["task_id"]), str(claimed["task_type"])
        if self._stopping.is_set():  # the claim raced `stop`
            self._hand_back(task_id)
            return
        timing = Timing(
            task_id, task_type, slot.name, claim_started=claim_started, claimed=time.time()
        )
        self.claims.remember(task_id)
        # The first progress report waits one interval: a task that is done sooner needs none.
        self._progress_sent[task_id] = time.monotonic()
        self.counts["claimed"] += 1
        slot.state, slot.task_id = BUSY, task_id
        params = dict(claimed.get("params") or {})
        extra = {"attempt": int(claimed.get("attempts") or 0) + 1}
        try:
            if task_type not in TASK_MODELS or task_type not in slot.spec.task_types:
                raise UnsupportedTaskError(f"actor {slot.name} does not run {task_type!r}")
            inputs = read_inputs(task_type, params, self.read, self.output_of)
            timing.sent = time.time()
            ref = slot.actor.run.remote(task_id, task_type, params, inputs)
        except Exception as error:  # the task is ours now: its outcome must be recorded
            slot.state, slot.task_id = IDLE, None
            self._hand_over(Finished(task_id, ERROR, slot.name, error=error), timing)
            return
        with self._held_lock:
            self.running[ref] = Running(task_id, task_type, slot, ref, timing, extra=extra)
        # Holding a task: look for its cancellation at the short interval from now on.
        self._next_beat = min(self._next_beat, time.monotonic() + self.config.cancel_check_interval)
        if not self._stopping.is_set():
            self.claims.prefetch(slot)

    # -- finishing -------------------------------------------------------------------
    def _collect(self, run: Running) -> None:
        """A run's ref is ready: free (or lose) the actor and hand the outcome over."""
        import ray

        with self._held_lock:
            del self.running[run.ref]
        slot = run.slot
        run.timing.received = time.time()
        finished = Finished(
            run.task_id, DONE, slot.name, stop_reason=run.stop_reason, extra=run.extra
        )
        try:
            finished.output = ray.get(run.ref)
        except ray.exceptions.RayActorError as error:
            finished.kind, finished.error = LOST, error
        except (ray.exceptions.TaskCancelledError, TaskCancelledError) as error:
            finished.kind, finished.error = CANCELLED, error
        except Exception as error:  # the backend's own error, wrapped by Ray
            finished.kind, finished.error = ERROR, error
        if finished.kind == LOST:
            self.pool.lost(slot)
        else:
            slot.state, slot.task_id = IDLE, None
            self._next_poll = 0.0
            if finished.kind == DONE and not self._stopping.is_set():
                self.chain.offer(run.task_id, slot)  # its completion may claim the next
        if finished.output is not None:
            run.timing.actor_started = finished.output["started"]
            run.timing.actor_finished = finished.output["finished"]
        self._hand_over(finished, run.timing)

    def _hand_over(self, finished: Finished, timing: Timing) -> None:
        self.recorder.hand_over(finished, timing)

    def _recorded(self, finished: Finished, timing: Timing) -> None:
        """Called by the recorder once the outcome's command was sent (loop thread)."""
        self.counts[finished.kind] += 1
        self.timings.append(timing)
        metrics.observe(timing)
        self._progress_sent.pop(finished.task_id, None)
        if timing.command in ("requeue", "release"):
            self.claims.forget(finished.task_id)  # ours to claim again
        chained = self.chain.take(finished.task_id)
        if chained is not None:  # claimed by the completion: its claim cost is counted there
            slot, claimed, at = chained
            self._start(slot, claimed, at)

    def _hand_back(self, task_id: str) -> None:
        """A task claimed as stopping began: released at once, not run until the deadline."""
        try:
            self.tasks.release_task(task_id, "dispatcher shutting down", worker_id=self.worker_id)
        except Exception:  # the heartbeats stop with us: the sweeper requeues it
            log.exception("handing back task %s failed", task_id)

    # -- liveness, cancellation, progress --------------------------------------------
    def _maybe_heartbeat(self, now: float) -> None:
        if now < self._next_beat:
            return
        held = self.held()
        interval = self.config.cancel_check_interval if held else self.config.heartbeat_interval
        self._next_beat = now + interval
        try:
            # Every task it holds: one the studio says it holds and it does not list (a
            # claim whose answer was lost) goes back to the queue.
            answer = self.tasks.heartbeat(self.worker_id, held, exhaustive=True)
        except Exception:
            log.exception("heartbeat failed")
            return
        stop = {str(t) for t in answer.stop}
        if stop:
            self._cancel(stop, "domain")

    def _cancel(self, task_ids: set[str], reason: str) -> None:
        import ray

        for run in list(self.running.values()):
            if run.task_id in task_ids and run.stop_reason is None:
                run.stop_reason = reason
                self.counts[f"stop:{reason}"] += 1
                ray.cancel(run.ref)

    def _progress(self, ref: Any) -> None:
        import ray

        self._drain = None
        try:
            latest: dict[str, tuple[int, int]] = ray.get(ref)
        except ray.exceptions.RayError:
            log.exception("progress relay failed")
            return
        now = time.monotonic()
        mine = {r.task_id for r in self.running.values() if r.stop_reason is None}
        for task_id, (step, total) in latest.items():
            last = self._progress_sent.get(task_id, 0.0)
            if task_id in mine and now - last >= self.config.progress_interval and step < total:
                self._progress_sent[task_id] = now
                self.recorder.submit(self._report, task_id, step, total)

    def _report(self, task_id: str, step: int, total: int) -> None:
        try:
            self.tasks.report_progress(task_id, step, total, worker_id=self.worker_id)
        except Exception as refused:  # the task finished or moved on meanwhile
            log.debug("progress of %s not recorded: %s", task_id, refused)

    def _maybe_sweep(self, now: float) -> None:
        if not self.config.sweep_interval or now < self._next_sweep:
            return
        self._next_sweep = now + self.config.sweep_interval
        try:
            swept = self.tasks.sweep_lost_workers()
            if swept.lost_workers:
                log.warning("workers lost: %s", list(swept.lost_workers))
        except Exception:
            log.exception("sweeping lost workers failed")

    # -- stopping --------------------------------------------------------------------
    def _stop_overdue(self, now: float) -> None:
        if now >= self._stop_deadline and self.running:
            self._cancel({r.task_id for r in self.running.values()}, "shutdown")

    def _finished_stopping(self) -> bool:
        return not self.running and not self.recorder.task_ids()

    # -- views for tests and benchmarks ----------------------------------------------
    def wait_idle(self, timeout: float) -> None:
        """Block until nothing is held (every outcome recorded); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while self.held():
            if time.monotonic() > deadline:
                raise TimeoutError(f"still holding {self.held()} after {timeout} s")
            time.sleep(0.01)

    def slots_by_state(self) -> dict[str, list[str]]:
        states: dict[str, list[str]] = {}
        for slot in self.pool.slots:
            states.setdefault(slot.state, []).append(slot.name)
        return states

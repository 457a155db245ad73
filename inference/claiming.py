"""Claiming for the dispatcher: which Queued task an idle actor takes next.

Candidates come from a `CandidateSource` (the claim queue), filtered to the task
types the actor's loaded model runs (model affinity), and `claim_next` re-checks
every rule on the aggregates (dependencies, credits, per-owner limit, starvation
order). The first page for a slot's next claim is read while its actor runs (a
refusal falls back to a fresh query, so a stale page costs a retry, never a rule),
and ids claimed a moment ago are skipped: the claim queue lags the log by a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from inference.actors import Slot
from inference.ports import Candidate, CandidateSource, TaskCommands

log = logging.getLogger("darkroom.inference")

# How long a claimed id is skipped in the claim queue (which lags the log by a batch).
RECENT_FOR = 5.0
# How long a page of candidates read while an actor runs may open the next claim (the
# claim re-checks every rule on the aggregates; a refusal falls back to a fresh query).
PREFETCH_FOR = 1.0

Claimed = tuple[Mapping[str, Any], float]  # the claim_next answer, and when the claim started
Start = Callable[[Slot, Mapping[str, Any], float], None]  # runs a claimed task on the slot


def _by_run_type(candidates: list[Candidate]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for candidate in candidates:
        grouped.setdefault(candidate.run_type, []).append(candidate.task_id)
    return grouped


class Claimer:
    """Claims one task at a time for a slot; see the module docstring."""

    def __init__(
        self,
        tasks: TaskCommands,
        candidates: CandidateSource,
        worker_id: str,
        run_types: tuple[str, ...],
        candidate_pages: tuple[int, ...],
    ) -> None:
        self.tasks = tasks
        self.candidates = candidates
        self.worker_id = worker_id
        self.run_types = run_types
        self.candidate_pages = candidate_pages
        self._lock = threading.Lock()
        self._recent: dict[str, float] = {}
        self._prefetched: dict[frozenset[str], tuple[float, list[Candidate]]] = {}

    def fill(self, idle: Iterable[Slot], start: Start) -> bool:
        """One claim per idle actor (`start` runs each claimed task), while the queue has
        work its model runs; True if any was claimed."""
        tried: set[str] = set()
        claimed_any = False
        for slot in idle:
            if slot.spec.name in tried:
                continue
            claimed = self.claim_for(slot)
            if claimed:
                start(slot, *claimed)
                claimed_any = True
            else:
                tried.add(slot.spec.name)
        return claimed_any

    def claim_for(self, slot: Slot) -> Claimed | None:
        """The task claimed for this slot, or None when the queue has none it runs."""
        claim_started = time.time()
        tried: set[str] = set()
        try:
            claimed = self._claim_prefetched(slot, tried)
            if claimed:
                return claimed, claim_started
            for limit in self.candidate_pages:
                found = self.candidates.candidates(
                    self.run_types,
                    slot.spec.task_types,
                    limit + len(self._recent_in_queue()),
                )
                fresh = [
                    c for c in found if c.task_id not in self._recent and c.task_id not in tried
                ][:limit]
                for run_type, ids in _by_run_type(fresh).items():
                    tried.update(ids)
                    claimed = self.tasks.claim_next(self.worker_id, run_type, slot.spec.name, ids)
                    if claimed:
                        return claimed, claim_started
                if len(found) < limit:
                    break  # the queue holds no more
        except Exception:
            log.exception("claiming for %s failed; trying again shortly", slot.name)
        return None

    def _claim_prefetched(self, slot: Slot, tried: set[str]) -> Mapping[str, Any] | None:
        """Offers the first page read while the previous task ran, if still fresh: saves
        the claim-queue query on the critical path. Never taken as proof of an empty
        queue; whatever it offered is skipped by the fresh query that follows a refusal."""
        page = self._prefetched.pop(frozenset(slot.spec.task_types), None)
        if page is None or time.monotonic() - page[0] > PREFETCH_FOR:
            return None
        fresh = [c for c in page[1] if c.task_id not in self._recent][: self.candidate_pages[0]]
        for run_type, ids in _by_run_type(fresh).items():
            tried.update(ids)
            claimed = self.tasks.claim_next(self.worker_id, run_type, slot.spec.name, ids)
            if claimed:
                return claimed
        return None

    def next_page(self, slot: Slot) -> tuple[str, list[str]] | None:
        """What a completion on this slot may claim in the same command: the oldest
        candidate of the first page (the one read while the slot's task ran, if still
        fresh, else read now). None when it lists nothing; the slot's own claim follows
        as before."""
        page = self._prefetched.pop(frozenset(slot.spec.task_types), None)
        if page is None or time.monotonic() - page[0] > PREFETCH_FOR:
            try:
                found = self.candidates.candidates(
                    self.run_types,
                    slot.spec.task_types,
                    self.candidate_pages[0] + len(self._recent_in_queue()),
                )
            except Exception:
                log.debug("reading candidates for %s failed", slot.name, exc_info=True)
                return None
        else:
            found = page[1]
        # One candidate, the oldest: every other one offered costs the command a query
        # (it is read, so checked), and a refusal leaves the slot's own claim to follow.
        fresh = [c for c in found if c.task_id not in self._recent][:1]
        return next(iter(_by_run_type(fresh).items()), None)

    def prefetch(self, slot: Slot) -> None:
        """Reads the next first page of candidates for this slot's model while it runs."""
        limit = self.candidate_pages[0]
        try:
            found = self.candidates.candidates(
                self.run_types, slot.spec.task_types, limit + len(self._recent_in_queue())
            )
        except Exception:
            log.debug("prefetching candidates for %s failed", slot.name, exc_info=True)
            return
        self._prefetched[frozenset(slot.spec.task_types)] = (time.monotonic(), found)
        warm = getattr(self.tasks, "warm", None)
        if callable(warm):  # the claim then reads them from the cache (checked)
            try:
                warm([c.task_id for c in found if c.task_id not in self._recent][:limit])
            except Exception:
                log.debug("warming candidates for %s failed", slot.name, exc_info=True)

    def _recent_in_queue(self) -> list[str]:
        """Ids claimed in the last moments, which a lagging claim queue may still list."""
        cutoff = time.monotonic() - RECENT_FOR
        return [t for t, at in self._recent.items() if at > cutoff]

    def remember(self, task_id: str) -> None:
        """Skip ids claimed a moment ago: the claim queue may not show the claim yet."""
        now = time.monotonic()
        with self._lock:
            self._recent = {k: v for k, v in self._recent.items() if v > now - RECENT_FOR}
            self._recent[task_id] = now

    def forget(self, task_id: str) -> None:
        """A task requeued or released by us: ours to claim again at once."""
        with self._lock:
            self._recent.pop(task_id, None)

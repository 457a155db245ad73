"""A completion that claims the slot's next task in the same command.

When a run finishes well on a slot that is then idle, the dispatcher offers the
slot with the task (`offer`). The settler's `complete_task` then sends the studio's
`complete_and_claim` with the slot's first page of candidates (the one read while
the task ran, `Claimer.next_page`): one transaction instead of two, on aggregates
the two share. What it claimed is handed back (`take`) once the outcome is
recorded, and the dispatcher starts it on the slot at once. Nothing offered, the
slot busy again meanwhile, an empty page, or the dispatcher stopping: a plain
`complete_task`, and the slot claims on its own as before (a dispatcher that stops
claims nothing more; what a completion claimed as it began stopping is handed back).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from inference.actors import IDLE, Slot
from inference.claiming import Claimer
from inference.ports import Completed, SerialCommands, TaskCommands

Chained = tuple[Slot, Mapping[str, Any], float]  # the slot, what was claimed, when


class ChainingCommands(SerialCommands):
    """`SerialCommands` whose completions may claim the slot's next task."""

    def __init__(self, tasks: TaskCommands) -> None:
        super().__init__(tasks)
        self.claimer: Claimer | None = None  # set by the dispatcher once built
        # Set when the dispatcher begins stopping: no completion claims from then on.
        self.stopping = threading.Event()
        self._offers: dict[str, Slot] = {}
        self._claimed: dict[str, Chained] = {}
        self._guard = threading.Lock()

    def warm(self, task_ids: list[str]) -> None:
        """Has the studio load the next claim's candidates while the slot's task runs
        (its `warm`, if it has one; a read, so not one at a time with the commands)."""
        warm = getattr(self._tasks, "warm", None)
        if callable(warm):
            warm(task_ids)

    def offer(self, task_id: str, slot: Slot) -> None:
        """The run of `task_id` finished well and its slot is idle: its completion may
        claim the slot's next task."""
        if self.chains:
            with self._guard:
                self._offers[task_id] = slot

    def take(self, task_id: str) -> Chained | None:
        """What the completion of `task_id` claimed, once (None: nothing)."""
        with self._guard:
            self._offers.pop(task_id, None)
            return self._claimed.pop(task_id, None)

    def complete_task(
        self,
        task_id: object,
        output_location: str | None,
        thumbnail_url: str | None = None,
        result_data: Mapping[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> Completed:
        with self._guard:
            slot = self._offers.pop(str(task_id), None)
        page = (
            self.claimer.next_page(slot)
            if slot is not None
            and slot.state == IDLE
            and self.claimer is not None
            and not self.stopping.is_set()
            else None
        )
        if slot is None or page is None or worker_id is None or self.stopping.is_set():
            return super().complete_task(
                task_id, output_location, thumbnail_url, result_data, worker_id
            )
        run_type, ids = page
        done = self.complete_and_claim(
            task_id,
            output_location,
            thumbnail_url,
            result_data,
            worker_id=worker_id,
            run_type=run_type,
            current_model=slot.spec.name,
            candidate_ids=ids,
        )
        if done.get("claimed"):
            with self._guard:
                self._claimed[str(task_id)] = (slot, done["claimed"], time.time())
        return done

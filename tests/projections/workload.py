"""A random but realistic stream of studio commands, for crash and rebuild tests."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.catalogue import resolve_default
from domain.credits import CreditLedger
from domain.errors import DomainError
from domain.studio import Studio
from domain.task import Task


class Workload:
    """Each `step()` runs one command through the studio (or saves task aggregates)."""

    def __init__(self, app: Studio, seed: int = 1) -> None:
        self.app = app
        self.rng = random.Random(seed)
        self.owner = f"owner-{seed}"
        self.project = app.create_project(self.owner, "load")["project_id"]
        self.generations: list[str] = []
        self.shots: list[str] = []
        self.variants: dict[str, list[str]] = {}
        self.tasks: list[Task] = []
        self.ledger = CreditLedger.open(self.owner)
        self.ledger.grant(100, "welcome", datetime(2026, 1, 1, tzinfo=UTC))
        app.save(self.ledger)
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)

    def step(self) -> None:
        r = self.rng.random()
        try:
            if r < 0.3 or len(self.generations) < 3:
                self._generation()
            elif r < 0.45:
                self._variant()
            elif r < 0.55:
                self._shot()
            elif r < 0.7:
                self._membership()
            elif r < 0.75:
                self.app.star_generation(
                    self.rng.choice(self.generations), None, self.rng.random() < 0.5
                )
            elif r < 0.78:
                self.app.delete_generation(self.rng.choice(self.generations), None)
            else:
                self._task()
        except DomainError:
            pass  # e.g. a deleted generation: the refusal writes nothing

    def _generation(self) -> None:
        kind = "video" if self.rng.random() < 0.2 else "image"
        made = self.app.create_generation(
            self.project,
            None,
            f"{len(self.generations)}.png",
            media_type=kind,
            params={"tool_type": self.rng.choice(["edit", "travel"])},
        )
        self.generations.append(made["generation_id"])
        self.variants[made["generation_id"]] = []

    def _variant(self) -> None:
        g = self.rng.choice(self.generations)
        choice = self.rng.random()
        if choice < 0.5 or not self.variants[g]:
            made = self.app.add_variant(
                g,
                None,
                f"{g}.{self.rng.random():.4f}.png",
                variant_type="upscaled",
                make_primary=self.rng.random() < 0.5,
            )
            self.variants[g].append(made["variant_id"])
        elif choice < 0.75:
            self.app.make_variant_primary(g, None, self.rng.choice(self.variants[g]))
        else:
            v = self.variants[g].pop(self.rng.randrange(len(self.variants[g])))
            self.app.delete_variant(g, None, v)

    def _shot(self) -> None:
        if self.shots and self.rng.random() < 0.2:
            self.app.delete_shot(self.shots.pop(), None)
        else:
            self.shots.append(self.app.create_shot(self.project, None, "s")["shot_id"])

    def _membership(self) -> None:
        if not self.shots:
            return self._shot()
        shot = self.rng.choice(self.shots)
        if self.rng.random() < 0.7:
            self.app.add_to_shot(
                shot, None, self.rng.choice(self.generations), with_position=self.rng.random() < 0.7
            )
        else:
            members = [m.generation_id for m in self.app.shot(shot).members]
            self.rng.shuffle(members)
            self.app.reorder_shot(shot, None, members)
        return None

    def _task(self) -> None:
        self.clock += timedelta(seconds=1)
        open_tasks = [t for t in self.tasks if not t.is_terminal]
        if not open_tasks or self.rng.random() < 0.4:
            deps = (
                [self.rng.choice(self.tasks).id] if self.tasks and self.rng.random() < 0.3 else []
            )
            t = Task.create(
                project_id=self.app.project(self.project).id,
                owner_id=self.owner,
                task_type=resolve_default("travel_segment"),
                params={"prompt": "p"},
                at=self.clock,
                dependant_on=deps,
            )
            self.tasks.append(t)
            self.app.save(t)
            return
        t = self.rng.choice(open_tasks)
        if t.status == "Queued":
            t.claim("w", self.clock)
            self.app.save(t)
        elif self.rng.random() < 0.7:
            t.complete("out.mp4", self.clock)
            self.ledger.charge_task(t.id, "0.5", self.clock)
            self.app.save(t, self.ledger)
        else:
            t.report_progress(1, 2)
            self.app.save(t)


def run_in_thread(
    workload: Workload, stop: threading.Event, errors: list[BaseException]
) -> threading.Thread:
    def loop() -> None:
        try:
            while not stop.is_set():
                workload.step()
        except BaseException as error:  # surfaced by the test
            errors.append(error)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def steps(workload: Workload, n: int) -> Any:
    for _ in range(n):
        workload.step()

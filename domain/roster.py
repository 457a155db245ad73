"""The workers the sweeper watches: joined on first sight, left once swept idle.
It changes only when a worker appears or goes, never on a heartbeat."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

ROSTER_ID = uuid5(NAMESPACE_URL, "https://darkroom.studio/worker-roster")


class WorkerRoster(Aggregate):
    TOPIC = "darkroom.worker_roster"

    class Created(Aggregate.Created):
        TOPIC = "darkroom.worker_roster.created"

    class Joined(Aggregate.Event):
        TOPIC = "darkroom.worker_roster.joined"
        worker_id: str

    class Left(Aggregate.Event):
        TOPIC = "darkroom.worker_roster.left"
        worker_id: str

    @staticmethod
    def create_id() -> UUID:
        return ROSTER_ID

    @event(Created)
    def __init__(self) -> None:
        self.workers: list[str] = []

    def join(self, worker_id: str) -> None:
        if worker_id not in self.workers:
            self._joined(worker_id=worker_id)

    def leave(self, worker_id: str) -> None:
        if worker_id in self.workers:
            self._left(worker_id=worker_id)

    @event(Joined)
    def _joined(self, worker_id: str) -> None:
        self.workers.append(worker_id)

    @event(Left)
    def _left(self, worker_id: str) -> None:
        self.workers.remove(worker_id)

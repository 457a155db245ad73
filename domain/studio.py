"""The studio's service layer: one eventsourcing Application, one global event log."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.credits import CreditLedger
from domain.generation import Generation
from domain.project import Project
from domain.roster import WorkerRoster
from domain.services.accounts import AccountServices
from domain.services.cached import keep, present
from domain.services.catalog import CatalogServices
from domain.services.history import HistoryServices
from domain.services.liveness import LivenessServices
from domain.services.orchestration import OrchestrationServices
from domain.services.resources import ResourceServices
from domain.services.tasks import TaskServices
from domain.shot import Shot
from domain.task import Task
from domain.user import User
from domain.worker import Worker
from domain.workload import Workload

# Events between snapshots, per aggregate kind whose stream grows with its owner's
# activity (docs/EVENTSTORE.md, "Aggregate inventory"). A load replays at most
# interval - 1 events after a snapshot; a snapshot costs one insert per interval saves.
# Tasks are not snapshotted: a task's stream ends with it (tens of events). Nor is
# the catalogue: its state starts from the code's default task types, which a
# snapshot would freeze (a deploy changing a default price must change the price),
# and only administrators add to its stream.
SNAPSHOT_INTERVALS: dict[type[Any], int] = {
    Workload: 50,
    CreditLedger: 50,
    Worker: 50,
    WorkerRoster: 50,
    Shot: 50,
    Generation: 50,
    Project: 50,
    User: 50,
}


class Studio(
    CatalogServices,
    AccountServices,
    HistoryServices,
    TaskServices,
    OrchestrationServices,
    LivenessServices,
    ResourceServices,
):
    """Verb methods for every command; each returns ids and the global `position`."""

    name = "Darkroom"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = SNAPSHOT_INTERVALS

    def _record(self, processing_event: Any) -> list[Any]:
        """What a command saved goes into the aggregate cache (`domain.services.cached.keep`:
        a copy, unless the cache holds a newer version), so its next load is the cache's
        fast-forward query instead of a snapshot query, an events query and a replay (the
        library caches saves only without fast-forward). Not tasks: the dispatcher claims
        them and warms its own cache (`warm`); here they would crowd out the aggregates
        that commands load again. Measured in bench/api.py at 64 clients: 0.58 -> 0.32
        full loads per command (docs/BENCHMARKS.md, issue 17)."""
        recordings: list[Any] = super()._record(processing_event)
        saved = processing_event.aggregates.values()
        keep(self.repository, [a for a in saved if not isinstance(a, Task)])
        present(self.repository, [a.id for a in saved])
        return recordings

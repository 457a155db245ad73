"""The studio's service layer: one eventsourcing Application, one global event log."""

from __future__ import annotations

from domain.services.accounts import AccountServices
from domain.services.catalog import CatalogServices
from domain.services.history import HistoryServices
from domain.services.liveness import LivenessServices
from domain.services.orchestration import OrchestrationServices
from domain.services.tasks import TaskServices


class Studio(CatalogServices, AccountServices, HistoryServices, TaskServices,
             OrchestrationServices, LivenessServices):
    """Verb methods for every command; each returns ids and the global `position`."""

    name = "Darkroom"

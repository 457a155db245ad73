"""The studio's service layer: one eventsourcing Application, one global event log."""

from __future__ import annotations

from domain.services.accounts import AccountServices
from domain.services.catalog import CatalogServices
from domain.services.history import HistoryServices


class Studio(CatalogServices, AccountServices, HistoryServices):
    """Verb methods for every command; each returns ids and the global `position`."""

    name = "Darkroom"

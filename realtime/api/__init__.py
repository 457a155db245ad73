"""The HTTP API: one small module per resource, each exporting its `ENDPOINTS`."""

from __future__ import annotations

from realtime.api import (
    catalogue,
    credits,
    generations,
    history,
    projections,
    projects,
    resources,
    shots,
    tasks,
    tokens,
    uploads,
    workers,
)
from realtime.api.base import Endpoint

ENDPOINTS: list[Endpoint] = [
    *projects.ENDPOINTS,
    *shots.ENDPOINTS,
    *generations.ENDPOINTS,
    *tasks.ENDPOINTS,
    *workers.ENDPOINTS,
    *credits.ENDPOINTS,
    *tokens.ENDPOINTS,
    *uploads.ENDPOINTS,
    *catalogue.ENDPOINTS,
    *resources.ENDPOINTS,
    *history.ENDPOINTS,
    *projections.ENDPOINTS,
]

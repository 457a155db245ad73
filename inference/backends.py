"""The backends' old address, kept for existing callers: they live in `inference.handlers`
now (the core, the results, the registry, one module per task family)."""

from __future__ import annotations

from inference.handlers import DiffusersBackend
from inference.handlers.results import Backend, Media, Result
from inference.models import IMAGE_TO_VIDEO

__all__ = ["IMAGE_TO_VIDEO", "Backend", "DiffusersBackend", "Media", "Result"]

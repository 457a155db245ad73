"""Old path of `projections.views.variants`, kept only for realtime/hub.py's snapshot code
until it calls `projections.views.topics.snapshot_of`; delete with that code."""

from projections.views.variants import variants_of

__all__ = ["variants_of"]

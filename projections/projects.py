"""Old path of `projections.views.projects`, kept only for realtime/hub.py's snapshot code
until it calls `projections.views.topics.snapshot_of`; delete with that code."""

from projections.views.projects import project_row

__all__ = ["project_row"]
